"""Webhooks reach public addresses only (issue 14, finding 4: server-side request forgery).

A webhook is checked when it is saved (a 422 naming ``webhook_url``) and again at every
delivery, against what its host resolves to then; the delivery connects to the address it
checked and never follows a redirect. Self-hosters allow their own networks explicitly.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlmodel import Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route

from devstack.appserver import AppServer, serve_in_thread
from events.reminders.deliveries import DeliveryFailed
from events.reminders.notifications import Recipient, ReminderMessage, post_webhook, send
from tasks.clock import utc_now
from tasks.errors import InvalidInput
from tasks.models import UserSettings
from tasks.webhooks import WebhookPolicy
from tests.conftest import JWT_SECRET
from todo_agent.api import app_for
from todo_agent.bootstrap import bootstrap
from todo_agent.settings import Settings

INSIDE = [
    "http://127.0.0.1:8080/hook",
    "http://localhost/hook",
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata
    "http://10.1.2.3/hook",
    "http://172.16.0.1/hook",
    "http://192.168.1.1/hook",
    "http://100.64.0.1/hook",  # shared address space (CGNAT)
    "http://0.0.0.0/hook",
    "http://224.0.0.1/hook",
    "http://240.0.0.1/hook",  # reserved
    "http://[::1]/hook",
    "http://[fd00::1]/hook",  # unique-local
    "http://[fe80::1]/hook",  # link-local
    "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped loopback
    "http://[64:ff9b::a9fe:a9fe]/hook",  # NAT64 of 169.254.169.254
]


class Receiver:
    """A real HTTP server that records what reaches it and answers with ``answer(request)``."""

    def __init__(self, answer: Callable[[Request], Any] | None = None) -> None:
        self.hits: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._answer = answer or (lambda _r: JSONResponse({"ok": True}))
        self.server: AppServer = serve_in_thread(
            Starlette(routes=[Route("/hook", self._hit, methods=["POST"])])
        )

    async def _hit(self, request: Request) -> Any:
        with self._lock:
            self.hits.append(dict(request.headers))
        return self._answer(request)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    yield hook
    hook.server.stop()


def message() -> ReminderMessage:
    return ReminderMessage(user_id="alice", task_id=1, title="Call mom", remind_at=utc_now())


@pytest.mark.parametrize("url", INSIDE)
def test_a_webhook_pointing_inside_is_refused_naming_the_field(url: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        WebhookPolicy().resolve(url)
    assert refused.value.field == "webhook_url"
    assert "public address" in refused.value.message


def test_a_public_address_and_an_allowed_network_or_host_pass() -> None:
    assert WebhookPolicy().resolve("https://93.184.216.34/hook").addresses == ("93.184.216.34",)
    allowed = WebhookPolicy.of(allowed_networks=["10.0.0.0/8"], allowed_hosts=["n8n.internal"],
                               resolver=lambda host, port: ["10.9.9.9"])  # fmt: skip
    assert allowed.resolve("http://anything.example/x").addresses == ("10.9.9.9",)
    assert allowed.resolve("http://n8n.internal/x").host == "n8n.internal"
    inside_too = WebhookPolicy.of(resolver=lambda host, port: ["93.184.216.34", "127.0.0.1"])
    with pytest.raises(InvalidInput, match="127.0.0.1, a loopback address"):
        inside_too.resolve("http://split.example/x")  # one inside address is enough to refuse


@pytest.mark.parametrize(
    "url",
    ["ftp://93.184.216.34/x", "http:///x", "http://user:pw@93.184.216.34/x", "http://[::1/x", "h" * 2001],
)
def test_a_webhook_that_is_not_a_plain_http_url_is_refused(url: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        WebhookPolicy().resolve(url)
    assert refused.value.field == "webhook_url"


async def test_saving_an_internal_webhook_through_the_api_answers_422_naming_the_field(
    make_settings, verifier
) -> None:
    app = app_for(bootstrap("api", make_settings(jwt_secret=JWT_SECRET)))
    headers = {"Authorization": f"Bearer {verifier.issue('alice')}"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://127.0.0.1", headers=headers
        ) as api:
            for url in ("http://169.254.169.254/latest/meta-data/", "http://127.0.0.1:6379/"):
                refused = await api.patch("/api/me", json={"webhook_url": url})
                assert refused.status_code == 422, refused.text
                assert refused.json()["field"] == "webhook_url"
            assert (await api.get("/api/me")).json()["webhook_url"] is None
            saved = await api.patch("/api/me", json={"webhook_url": "https://93.184.216.34/hook"})
            assert saved.status_code == 200 and saved.json()["webhook_url"] == "https://93.184.216.34/hook"


def test_the_allow_list_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, make_settings) -> None:
    monkeypatch.setenv("TODO_WEBHOOK_ALLOWED_NETWORKS", '["127.0.0.1/32"]')
    monkeypatch.setenv("TODO_WEBHOOK_ALLOWED_HOSTS", '["hooks.lan"]')
    policy = Settings().webhook_policy
    assert policy.resolve("http://127.0.0.1:9/x").addresses == ("127.0.0.1",)
    assert "hooks.lan" in policy.allowed_hosts
    with pytest.raises(ValueError, match="not-a-network"):
        make_settings(webhook_allowed_networks=["not-a-network"])


async def test_a_webhook_that_now_resolves_inside_is_not_posted_at_delivery(make_settings, receiver) -> None:
    """Saved when it was allowed (or before this check existed), inside now: refused for good."""
    container = bootstrap("notifications", make_settings())
    url = f"{receiver.server.url}/hook"
    with Session(container.engine) as session:  # as an older release or a DNS change left it
        session.add(UserSettings(user_id="alice", webhook_url=url))
        session.commit()
    recipient = Recipient(timezone="UTC", email=None, webhook_url=url)
    with pytest.raises(DeliveryFailed) as failed:
        await send("webhook", container.settings, recipient, "event-1", message())
    assert not failed.value.transient and "public address" in str(failed.value)
    assert receiver.hits == []


async def test_a_delivery_connects_to_the_address_it_checked(receiver) -> None:
    """The name is resolved once, by the check; the connection goes to that address with the
    name as Host, so a second lookup answering something else cannot be reached."""
    lookups: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"]

    policy = WebhookPolicy.of(allowed_networks=["127.0.0.1/32"], resolver=resolver)
    port = receiver.server.port
    await post_webhook(f"http://hooks.example.test:{port}/hook", {"type": "reminder"}, policy)
    assert lookups == ["hooks.example.test"]
    assert [hit["host"] for hit in receiver.hits] == [f"hooks.example.test:{port}"]


async def test_a_redirect_is_not_followed() -> None:
    inside = "http://10.255.255.1/steal"
    redirecting = Receiver(lambda _r: RedirectResponse(inside, status_code=307))
    try:
        policy = WebhookPolicy.of(allowed_networks=["127.0.0.1/32"])
        with pytest.raises(DeliveryFailed) as failed:
            await asyncio.wait_for(post_webhook(f"{redirecting.server.url}/hook", {}, policy), 20)
        assert str(failed.value) == "webhook answered HTTP 307" and not failed.value.transient
        assert len(redirecting.hits) == 1
    finally:
        redirecting.server.stop()


async def test_a_host_that_does_not_resolve_now_is_retried_later() -> None:
    def resolver(host: str, port: int) -> list[str]:
        raise OSError("Temporary failure in name resolution")

    with pytest.raises(DeliveryFailed) as failed:
        await post_webhook("https://hooks.example.test/x", {}, WebhookPolicy.of(resolver=resolver))
    assert failed.value.transient and "could not be resolved" in str(failed.value)


def _self_signed(host: str, folder: Any) -> tuple[str, str]:
    """A certificate for ``host`` (and its key), as files: the webhook server's identity."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(cert_file), str(key_file)


async def test_an_https_webhook_on_the_checked_address_still_verifies_the_hosts_certificate(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connecting to the checked address keeps TLS honest: the certificate must be the host
    name's (sent as SNI), not the address's."""
    import ssl

    import uvicorn

    from devstack.procs import free_port

    host = "hooks.example.test"
    cert_file, key_file = _self_signed(host, tmp_path)
    hits: list[str] = []

    async def hit(request: Request) -> JSONResponse:
        hits.append(request.headers["host"])
        return JSONResponse({"ok": True})

    port = free_port()
    config = uvicorn.Config(
        Starlette(routes=[Route("/hook", hit, methods=["POST"])]), host="127.0.0.1", port=port,
        ssl_certfile=cert_file, ssl_keyfile=key_file, log_level="warning",
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    trusted = ssl.create_default_context(cafile=cert_file)  # what a public CA is in production
    real_client = httpx.AsyncClient
    monkeypatch.setattr(httpx, "AsyncClient", lambda **kwargs: real_client(verify=trusted, **kwargs))
    policy = WebhookPolicy.of(allowed_networks=["127.0.0.1/32"], resolver=lambda h, p: ["127.0.0.1"])
    try:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.05)
        await post_webhook(f"https://{host}:{port}/hook", {"type": "reminder"}, policy)
        assert hits == [f"{host}:{port}"]
        impostor = WebhookPolicy.of(allowed_networks=["127.0.0.1/32"], resolver=lambda h, p: ["127.0.0.1"])
        with pytest.raises(DeliveryFailed, match="unreachable"):  # another name: the certificate is wrong
            await post_webhook(f"https://other.example.test:{port}/hook", {}, impostor)
        assert len(hits) == 1
    finally:
        server.should_exit = True
        thread.join(timeout=10)
