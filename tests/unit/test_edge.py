"""The edge guard through the ASGI app (httpx's ASGITransport, a chosen peer address): Host and
Origin on every route, sidecar-only and operator routes, sign-in before the body, the body cap,
security headers, one token-expiry rule on REST, /ws and /mcp, and production's app-token rule."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import jwt
import pytest
import websockets

from auth.tokens import JwtVerifier
from devstack.appserver import serve_in_thread
from tests.conftest import JWT_SECRET
from todo_agent import cli
from todo_agent.api import app_for
from todo_agent.bootstrap import Container, bootstrap
from todo_agent.settings import Settings

LOCAL = ("127.0.0.1", 50123)
ELSEWHERE = ("203.0.113.9", 50123)  # a peer on another machine (TEST-NET-3)
APP_TOKEN = "sidecar-token-for-the-edge-tests"
FORGED_UPDATE = {
    "specversion": "1.0", "id": "9001", "source": "attacker", "type": "todo.task.updated.v1",
    "topic": "task-updates", "datacontenttype": "application/json",
    "data": {"user_id": "alice", "task_id": 1, "event_type": "updated", "task_data": {"title": "pwned"}},
}  # fmt: skip
MCP_INITIALIZE = {
    "jsonrpc": "2.0", "id": 1, "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {},
               "clientInfo": {"name": "edge-test", "version": "1"}},
}  # fmt: skip
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


@contextlib.asynccontextmanager
async def client(
    app: Any, *, base_url: str = "http://127.0.0.1:8000", peer: tuple[str, int] = LOCAL
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=peer)
    async with httpx.AsyncClient(transport=transport, base_url=base_url) as http:
        yield http


def mcp_reply(reply: httpx.Response) -> Any:
    """The JSON-RPC message of an MCP reply: a JSON body, or the one event of an SSE body."""
    if reply.headers["content-type"].startswith("text/event-stream"):
        data = next(line for line in reply.text.splitlines() if line.startswith("data: "))
        return json.loads(data.removeprefix("data: "))
    return reply.json()


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def expired_token(seconds_ago: int) -> str:
    now = int(time.time())
    claims = {"sub": "alice", "aud": "todo-agent", "iat": now - 600, "exp": now - seconds_ago}
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


# ---- Host and Origin (no-login embedded mode) ----


async def test_without_sign_in_a_foreign_host_name_reaches_no_route(
    make_container: Callable[..., Container],
) -> None:
    app = app_for(make_container("all"))
    requests = [
        ("GET", "/api/tasks", None), ("POST", "/api/tasks", {"title": "rebound"}), ("GET", "/", None),
        ("GET", "/api/conversations", None), ("POST", "/api/chat", {"message": "list"}),
        ("POST", "/mcp", MCP_INITIALIZE), ("GET", "/metrics", None),
    ]  # fmt: skip
    async with client(app, base_url="http://rebound.example:8000") as rebound:
        for method, path, body in requests:
            reply = await rebound.request(method, path, json=body, headers=MCP_HEADERS)
            assert reply.status_code == 421, (method, path, reply.status_code)
            assert "TODO_ALLOWED_HOSTS" in reply.json()["detail"]
    for name in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000"):
        async with client(app, base_url=f"http://{name}") as local:
            assert (await local.get("/api/tasks")).status_code == 200, name
    async with client(app) as local:
        assert (await local.get("/api/tasks")).json()["items"] == []  # nothing was created


async def test_without_sign_in_a_page_of_another_origin_cannot_write(
    make_container: Callable[..., Container],
) -> None:
    app = app_for(make_container("all"))
    async with client(app) as local:
        for origin in ("http://evil.example", "http://localhost:3000", "http://127.0.0.1:8001", "null"):
            reply = await local.post("/api/tasks", json={"title": "forged"}, headers={"origin": origin})
            assert reply.status_code == 403, origin
            assert "not allowed" in reply.json()["detail"]
        assert (await local.get("/api/tasks")).json()["items"] == []
        same = await local.post(
            "/api/tasks", json={"title": "mine"}, headers={"origin": "http://127.0.0.1:8000"}
        )
        assert same.status_code == 201, same.text
        assert (await local.post("/api/tasks", json={"title": "cli"})).status_code == 201  # no Origin


async def test_allowed_hosts_and_the_public_url_extend_the_names_and_origins(
    make_container: Callable[..., Container],
) -> None:
    app = app_for(
        make_container(
            "all", allowed_hosts=["tasks.lan:8443", "ui.example"], public_url="https://todo.example.com"
        )
    )
    for base, ok in [
        ("https://todo.example.com", True), ("https://tasks.lan:8443", True),
        ("https://tasks.lan:9000", False), ("http://ui.example:1234", True),
    ]:  # fmt: skip
        async with client(app, base_url=base) as http:
            assert ((await http.get("/api/tasks")).status_code == 200) is ok, base
    async with client(app) as local:
        from_ui = await local.post(
            "/api/tasks", json={"title": "ui"}, headers={"origin": "https://ui.example"}
        )
        assert from_ui.status_code == 201


# ---- security headers; /mcp's Host check with sign-in on 0.0.0.0 ----


async def test_every_reply_carries_the_security_headers(make_container: Callable[..., Container]) -> None:
    app = app_for(make_container("all"))
    async with client(app) as local:
        for path in ("/", "/static/js/main.js", "/api/tasks", "/healthz", "/no-such-page"):
            headers = (await local.get(path)).headers
            policy = headers["content-security-policy"]
            assert "frame-ancestors 'none'" in policy and "script-src 'self';" in policy, path
            assert "unsafe-inline" not in policy, path
            assert headers["x-frame-options"] == "DENY", path
            assert headers["x-content-type-options"] == "nosniff", path
            assert headers["referrer-policy"] == "no-referrer", path
        assert "cdn.jsdelivr.net" in (await local.get("/docs")).headers["content-security-policy"]


async def test_with_sign_in_on_all_interfaces_mcp_still_checks_the_host(
    make_container: Callable[..., Container], verifier: JwtVerifier
) -> None:
    app = app_for(make_container("api", jwt_secret=JWT_SECRET, host="0.0.0.0"))
    headers = {**MCP_HEADERS, **bearer(verifier.issue("alice"))}
    async with app.router.lifespan_context(app):  # the MCP session manager runs
        async with client(app, base_url="http://rebound.example:8000") as rebound:
            assert (await rebound.post("/mcp", json=MCP_INITIALIZE, headers=headers)).status_code == 421
            assert (await rebound.get("/api/tasks", headers=headers)).status_code == 421
        async with client(app, base_url="http://0.0.0.0:8000") as bound:
            assert (await bound.post("/mcp", json=MCP_INITIALIZE, headers=headers)).status_code == 200
        async with client(app) as local:
            reply = await local.post("/mcp", json=MCP_INITIALIZE, headers=headers)
            assert reply.status_code == 200 and mcp_reply(reply)["result"]["serverInfo"]
        async with client(app, base_url="http://10.1.2.3:8000", peer=ELSEWHERE) as kubelet:
            assert (await kubelet.get("/healthz")).status_code == 200  # probes use the pod's address


# ---- one token rule; sign-in before the body; the body cap; metrics ----


async def test_a_token_expired_20_seconds_ago_is_refused_by_rest_mcp_and_the_socket(
    make_container: Callable[..., Container],
) -> None:
    container = make_container("all", jwt_secret=JWT_SECRET)
    stale = expired_token(20)
    with serve_in_thread(app_for(container)) as server:
        async with httpx.AsyncClient(base_url=server.url, headers=bearer(stale)) as http:
            rest = await http.get("/api/tasks")
            assert rest.status_code == 401 and "expired" in rest.json()["detail"]
            assert (await http.post("/mcp", json=MCP_INITIALIZE, headers=MCP_HEADERS)).status_code == 401
        async with websockets.connect(f"ws://127.0.0.1:{server.port}/ws?token={stale}") as ws:
            assert "expired" in json.loads(await ws.recv())["detail"]
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 1008


async def test_with_sign_in_the_api_refuses_before_reading_the_body(
    make_container: Callable[..., Container],
) -> None:
    app = app_for(make_container("all", jwt_secret=JWT_SECRET))
    chunks_read = 0

    async def fifty_megabytes() -> AsyncIterator[bytes]:
        nonlocal chunks_read
        chunk = b" " * 1_048_576
        for _ in range(50):
            chunks_read += 1
            yield chunk

    async with client(app) as local:
        reply = await local.post(
            "/api/tasks", content=fifty_megabytes(), headers={"content-type": "application/json"}
        )
    assert reply.status_code == 401 and "Sign in" in reply.json()["detail"]
    assert reply.headers["www-authenticate"].startswith("Bearer")
    assert chunks_read == 0


async def test_a_body_over_the_cap_is_refused_with_413(
    make_container: Callable[..., Container], verifier: JwtVerifier
) -> None:
    app = app_for(make_container("all", jwt_secret=JWT_SECRET, max_body_bytes=64 * 1024))
    alice = bearer(verifier.issue("alice"))
    big = json.dumps({"title": "x", "description": "y" * 100_000})

    async def streamed() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 8192):
            yield big[start : start + 8192].encode()

    async with client(app) as local:
        declared = await local.post(
            "/api/tasks", content=big, headers={**alice, "content-type": "application/json"}
        )
        assert declared.status_code == 413 and "TODO_MAX_BODY_BYTES" in declared.json()["detail"]
        chunked = await local.post(
            "/api/tasks", content=streamed(), headers={**alice, "content-type": "application/json"}
        )
        assert chunked.status_code == 413
        assert (await local.post("/api/tasks", json={"title": "small"}, headers=alice)).status_code == 201
        assert [t["title"] for t in (await local.get("/api/tasks", headers=alice)).json()["items"]] == [
            "small"
        ]


async def test_prometheus_metrics_answer_this_machine_or_a_scrape_with_the_app_token(
    make_container: Callable[..., Container],
) -> None:
    app = app_for(make_container("all", jwt_secret=JWT_SECRET, app_api_token=APP_TOKEN))
    async with client(app, peer=ELSEWHERE, base_url="http://10.1.2.3:8000") as pod_address:
        assert (await pod_address.get("/metrics")).status_code == 421  # the Host rule, without the token
        assert (await pod_address.get("/metrics", headers=bearer("wrong"))).status_code == 421
        scraped = await pod_address.get("/metrics", headers=bearer(APP_TOKEN))
        assert scraped.status_code == 200 and "todo_outbox_backlog " in scraped.text
        assert scraped.headers["content-type"].startswith("text/plain")
    async with client(app, peer=ELSEWHERE) as remote:
        assert (await remote.get("/metrics")).status_code == 403
        assert (await remote.get("/metrics", headers={"dapr-api-token": APP_TOKEN})).status_code == 200
        # The token opens the metrics only: elsewhere a Bearer app token is no user's sign-in.
        assert (await remote.get("/api/tasks", headers=bearer(APP_TOKEN))).status_code == 401
    alice = bearer(JwtVerifier(secret=JWT_SECRET, audience="todo-agent").issue("alice", ttl=60))
    async with client(app) as local:
        task = (await local.post("/api/tasks", json={"title": "counted"}, headers=alice)).json()
        assert (await local.get(f"/api/tasks/{task['id']}", headers=alice)).status_code == 200
        text = (await local.get("/metrics")).text
        assert 'todo_http_requests_total{method="POST",route="/api/tasks",status="201"}' in text
        assert 'route="/api/tasks/{task_id}"' in text  # the template: never one series per id
        assert f'/api/tasks/{task["id"]}"' not in text


# ---- the Dapr-only routes ----


async def test_without_an_app_token_the_sidecar_routes_answer_only_loopback_callers(
    make_container: Callable[..., Container],
) -> None:
    container = make_container("api", jwt_secret=JWT_SECRET, dapr_http_port=3999, dapr_grpc_port=3998)
    app = app_for(container)
    async with client(app, peer=ELSEWHERE) as remote:
        forged = await remote.post("/events/task-updates", json=FORGED_UPDATE)
        assert forged.status_code == 401 and "sidecar" in forged.json()["detail"]
        assert (await remote.post("/job/reminder-task-1", json={})).status_code == 401
    async with client(app) as sidecar:  # daprd calls the app over loopback
        delivered = await sidecar.post("/events/task-updates", json=FORGED_UPDATE)
        assert delivered.status_code == 200 and delivered.json() == {"status": "SUCCESS"}


def _production(**overrides: Any) -> dict[str, Any]:
    return {
        "environment": "production", "jwt_secret": "p" * 40, "dapr_http_port": 3500, "dapr_grpc_port": 50001,
        **overrides,
    }  # fmt: skip


def test_production_with_dapr_refuses_to_serve_without_the_app_token(
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = make_settings(**_production())  # settings alone are fine: `todo-agent migrate` serves nothing
    with pytest.raises(RuntimeError, match="APP_API_TOKEN"):
        app_for(bootstrap("api", settings))
    environment = {
        "TODO_ENVIRONMENT": "production", "TODO_JWT_SECRET": "p" * 40, "DAPR_HTTP_PORT": "3500",
        "DAPR_GRPC_PORT": "50001", "TODO_DATABASE_URL": str(settings.database_url),
    }  # fmt: skip
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("APP_API_TOKEN", raising=False)
    monkeypatch.delenv("TODO_APP_API_TOKEN", raising=False)
    monkeypatch.setattr("uvicorn.run", lambda *a, **k: pytest.fail("it started serving"))
    assert cli.main(["serve", "api", "--host", "0.0.0.0"]) == 2
    assert "needs APP_API_TOKEN" in capsys.readouterr().err
    app_for(bootstrap("api", make_settings(**_production(app_api_token=APP_TOKEN))))
