"""``/mcp`` as an OAuth 2.1 protected resource, proven with a real Keycloak (devstack component)
and the official MCP Python client: discovery (RFC 9728, then the realm's metadata), dynamic
client registration, authorization code with PKCE (the Keycloak login form driven with httpx),
then tools, resources, a live subscription, a prompt, a completion and a delete that is asked
about and cancelled. Tokens are checked for the audience (the resource) and the scopes."""

from __future__ import annotations

import html
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import anyio
import httpx
import httpx2
import mcp_types
import pytest
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)

from devstack.config import StackConfig
from devstack.keycloak import ADMIN_PASSWORD, ADMIN_USER, Keycloak
from tasks.inputs import TaskQuery
from tasks.service import Actor
from tests.integration.mcp.support import prompt_text, resource_text, updated_uri
from todo_agent.api import app_for
from todo_agent.bootstrap import Container, bootstrap
from todo_agent.local_server import free_port

pytestmark = pytest.mark.integration

REDIRECT_URI = "http://localhost:8976/callback"
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def keycloak() -> Iterator[Keycloak]:
    """Keycloak from the stack folder: started here unless it runs, and then stopped here."""
    server = Keycloak(StackConfig.from_env())
    started_here = server.status().pid is None and not server.status().healthy
    server.up()
    yield server
    if started_here:
        server.down()


@dataclass
class Realm:
    issuer: str
    name: str


@dataclass
class Served:
    url: str
    container: Container
    realm: Realm


def _admin(keycloak: Keycloak) -> httpx.Client:
    token = httpx.post(
        f"{keycloak.url}/realms/master/protocol/openid-connect/token",
        data={
            "grant_type": "password",
            "client_id": "admin-cli",
            "username": ADMIN_USER,
            "password": ADMIN_PASSWORD,
        },
        timeout=30,
    )
    token.raise_for_status()
    return httpx.Client(
        base_url=f"{keycloak.url}/admin/realms",
        headers={"Authorization": f"Bearer {token.json()['access_token']}"},
        timeout=30,
    )


def make_realm(keycloak: Keycloak, resource: str) -> Realm:
    """A realm of its own: the scopes tasks:read and tasks:write (each puts ``resource`` in the
    token's audience), users alice and bob, anonymous registration allowed from loopback, and a
    password-grant client for tokens with a chosen scope."""
    name = f"todo-{secrets.token_hex(4)}"
    with _admin(keycloak) as admin:
        admin.post("", json={"realm": name, "enabled": True}).raise_for_status()
        for scope in ("tasks:read", "tasks:write"):
            admin.post(f"/{name}/client-scopes", json={
                "name": scope, "protocol": "openid-connect",
                "attributes": {"include.in.token.scope": "true", "display.on.consent.screen": "false"},
                "protocolMappers": [{
                    "name": "audience", "protocol": "openid-connect",
                    "protocolMapper": "oidc-audience-mapper",
                    "config": {"included.custom.audience": resource, "access.token.claim": "true",
                               "id.token.claim": "false", "introspection.token.claim": "true"},
                }],
            }).raise_for_status()  # fmt: skip
            scope_id = next(s["id"] for s in admin.get(f"/{name}/client-scopes").json() if s["name"] == scope)
            admin.put(f"/{name}/default-optional-client-scopes/{scope_id}").raise_for_status()
        for user in ("alice", "bob"):
            admin.post(f"/{name}/users", json={
                "username": user, "enabled": True, "email": f"{user}@example.com", "emailVerified": True,
                "firstName": user.title(), "lastName": "Example",
                "credentials": [{"type": "password", "value": PASSWORD, "temporary": False}],
            }).raise_for_status()  # fmt: skip
        admin.post(f"/{name}/clients", json={
            "clientId": "todo-cli", "publicClient": True, "directAccessGrantsEnabled": True,
            "standardFlowEnabled": False, "defaultClientScopes": ["basic", "profile", "email"],
            "optionalClientScopes": ["tasks:read", "tasks:write"],
        }).raise_for_status()  # fmt: skip
        _trust_loopback_registrations(admin, name)
    return Realm(issuer=f"{keycloak.url}/realms/{name}", name=name)


def _trust_loopback_registrations(admin: httpx.Client, realm: str) -> None:
    """Keycloak refuses anonymous dynamic registration from hosts it does not trust."""
    policies = admin.get(
        f"/{realm}/components",
        params={"type": "org.keycloak.services.clientregistration.policy.ClientRegistrationPolicy"},
    ).json()
    trusted = next(p for p in policies if p["providerId"] == "trusted-hosts" and p["subType"] == "anonymous")
    trusted["config"]["trusted-hosts"] = ["127.0.0.1", "localhost"]
    admin.put(f"/{realm}/components/{trusted['id']}", json=trusted).raise_for_status()


@pytest.fixture(scope="module")
def served(keycloak: Keycloak, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The api role with sign-in by the realm's tokens (JWKS), at its public URL."""
    from todo_agent.local_server import serve_in_thread
    from todo_agent.settings import Settings

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    realm = make_realm(keycloak, f"{url}/mcp")
    settings = Settings(
        database_url=f"sqlite:///{tmp_path_factory.mktemp('oauth') / 'todo.db'}",
        timezone="Europe/Berlin",
        public_url=url,
        jwks_url=f"{realm.issuer}/protocol/openid-connect/certs",
        jwt_issuer=realm.issuer,
        jwt_audience=f"{url}/mcp",
    )
    container = bootstrap("api", settings)
    server = serve_in_thread(app_for(container), port)
    try:
        yield Served(url, container, realm)
    finally:
        server.stop()
        container.engine.dispose()


@dataclass
class MemoryStorage:
    tokens: OAuthToken | None = None
    client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


@dataclass
class Browser:
    """Plays the person at Keycloak's login page: opens the authorization URL, fills in the form,
    and hands the client the code from the redirect (which goes nowhere: it is only read)."""

    username: str
    opened: list[str] = field(default_factory=list)
    result: AuthorizationCodeResult | None = None

    async def open(self, authorization_url: str) -> None:
        self.opened.append(authorization_url)
        async with httpx.AsyncClient(follow_redirects=False, timeout=30) as browser:
            reply = await browser.get(authorization_url)
            for _ in range(5):  # the login form, then the consent screen
                if reply.status_code == 302 and reply.headers["location"].startswith(REDIRECT_URI):
                    break
                if reply.status_code == 302:
                    target = urljoin(str(reply.url), reply.headers["location"])
                    reply = await browser.get(target, headers=_cookies(browser))
                    continue
                assert reply.status_code == 200, _errors(reply.text)
                reply = await browser.post(
                    _form_action(reply), data=self._answer(reply.text), headers=_cookies(browser)
                )
        location = reply.headers.get("location", "")
        assert location.startswith(REDIRECT_URI), (location, _errors(reply.text))
        query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        self.result = AuthorizationCodeResult(
            code=query["code"], state=query.get("state"), iss=query.get("iss")
        )

    def _answer(self, page: str) -> dict[str, str]:
        if 'id="kc-form-login"' in page:
            return {"username": self.username, "password": PASSWORD}
        assert 'name="accept"' in page, _errors(page)  # the consent screen: the person grants the scopes
        return {"accept": "Yes"}

    async def code(self) -> AuthorizationCodeResult:
        assert self.result is not None
        return self.result


def _cookies(browser: httpx.AsyncClient) -> dict[str, str]:
    """Keycloak marks its cookies Secure; a browser sends those to a loopback http:// origin (a
    secure context), httpx's cookie jar does not: send them as a browser would."""
    return {"Cookie": "; ".join(f"{c.name}={c.value}" for c in browser.cookies.jar)}


def _form_action(reply: httpx.Response) -> str:
    """Where the page's form posts to: the login form when there is one, else the first form."""
    forms = re.findall(r"<form[^>]*>", reply.text)
    form = next((f for f in forms if 'id="kc-form-login"' in f), forms[0] if forms else None)
    action = re.search(r'action="([^"]+)"', form or "")
    assert action, _errors(reply.text)
    return urljoin(str(reply.url), html.unescape(action.group(1)))


def _errors(page: str) -> list[str]:
    return re.findall(r"(?s)<(?:span|div|p)[^>]*(?:error|alert|feedback)[^>]*>.{0,300}", page) or [page[:500]]


def oauth_client(url: str, browser: Browser, storage: MemoryStorage, **kwargs: Any) -> Client:
    auth = OAuthClientProvider(
        server_url=f"{url}/mcp",
        client_metadata=OAuthClientMetadata(
            client_name="todo-agent tests",
            redirect_uris=[REDIRECT_URI],  # type: ignore[list-item]
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=browser.open,
        callback_handler=browser.code,
    )
    return Client(
        streamable_http_client(f"{url}/mcp", http_client=httpx2.AsyncClient(auth=auth, timeout=60)), **kwargs
    )


def password_token(realm: Realm, username: str, scope: str) -> str:
    reply = httpx.post(
        f"{realm.issuer}/protocol/openid-connect/token",
        data={"grant_type": "password", "client_id": "todo-cli", "username": username,
              "password": PASSWORD, "scope": scope},
        timeout=30,
    )  # fmt: skip
    reply.raise_for_status()
    return str(reply.json()["access_token"])


def structured(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    return result.structured_content


def error_text(result: Any) -> str:
    assert result.is_error, result.structured_content
    return " ".join(c.text for c in result.content)


async def test_a_client_discovers_signs_in_with_pkce_and_uses_everything(served: Served) -> None:
    browser, storage = Browser("alice"), MemoryStorage()
    asked: list[str] = []

    async def cancel(_ctx: Any, params: Any) -> mcp_types.ElicitResult:
        asked.append(params.message)
        return mcp_types.ElicitResult(action="cancel")

    async with oauth_client(served.url, browser, storage, elicitation_callback=cancel) as client:
        # Discovery and sign-in happened on the first request: PKCE S256, the resource, the scopes.
        [opened] = browser.opened
        query = parse_qs(urlsplit(opened).query)
        assert opened.startswith(f"{served.realm.issuer}/protocol/openid-connect/auth")
        assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) >= 43
        assert query["resource"] == [f"{served.url}/mcp"]
        assert set(query["scope"][0].split()) >= {"tasks:read", "tasks:write"}  # from the metadata
        assert storage.client is not None and storage.client.client_id  # registered dynamically
        assert storage.tokens is not None and "tasks:write" in (storage.tokens.scope or "")

        added = structured(await client.call_tool("add_task", {"title": "Signed in", "due": "today 23:00"}))
        uri = f"todo://tasks/{added['id']}"
        listed = await client.list_resources()
        assert [r.uri for r in listed.resources] == ["todo://today", uri]
        today = resource_text(await client.read_resource("todo://today"))
        assert "Signed in" in today

        async with client.listen(resource_subscriptions=[uri]) as stream:
            sent = time.perf_counter()
            async with httpx.AsyncClient(timeout=10) as rest:  # the REST API takes the same token
                reply = await rest.patch(
                    f"{served.url}/api/tasks/{added['id']}", json={"priority": "high"},
                    headers={"Authorization": f"Bearer {storage.tokens.access_token}"},
                )  # fmt: skip
                assert reply.status_code == 200, reply.text
            with anyio.fail_after(10):
                event = await stream.__anext__()
            latency = time.perf_counter() - sent
        assert updated_uri(event) == uri

        prompt = await client.get_prompt("plan_my_day", {"hours_available": "2"})
        assert "Signed in" in prompt_text(prompt)
        completion = await client.complete(
            mcp_types.ResourceTemplateReference(uri="todo://tasks/{task_id}"),
            {"name": "task_id", "value": "sign"},
        )
        assert completion.completion.values == [str(added["id"])]

        refused = error_text(await client.call_tool("delete_task", {"task_id": added["id"]}))
        assert asked == [f"Delete task {added['id']} 'Signed in' and its subtasks? (undo brings them back)"]
        assert "Nothing was deleted" in refused
    print(f"\nREST write -> listen stream (OAuth, Keycloak): {latency * 1000:.0f} ms")
    subject = served.container.verifier.verify(storage.tokens.access_token).user_id  # type: ignore[union-attr]
    kept = served.container.tasks.list(Actor(subject), TaskQuery(status="all")).items
    assert [(t.title, t.priority) for t in kept] == [("Signed in", "high")]


async def test_a_read_only_keycloak_token_reads_but_cannot_write(served: Served) -> None:
    token = password_token(served.realm, "bob", "openid tasks:read")
    headers = {"Authorization": f"Bearer {token}"}
    transport = streamable_http_client(
        f"{served.url}/mcp", http_client=httpx2.AsyncClient(headers=headers, timeout=30)
    )
    async with Client(transport) as client:
        assert structured(await client.call_tool("list_tasks", {}))["items"] == []
        refused = error_text(await client.call_tool("add_task", {"title": "Not allowed"}))
        again = structured(await client.call_tool("list_tasks", {"status": "all"}))
    assert "may only read tasks (scope tasks:read)" in refused and again["items"] == []


@pytest.mark.parametrize("scope", ["openid", "openid profile email"])
async def test_a_keycloak_token_for_another_audience_is_refused(served: Served, scope: str) -> None:
    token = password_token(served.realm, "bob", scope)  # no tasks scope: the resource is not its audience
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream", "Authorization": f"Bearer {token}",
               "MCP-Protocol-Version": "2025-11-25"}  # fmt: skip
    async with httpx.AsyncClient(timeout=10) as http:
        refused = await http.post(f"{served.url}/mcp", headers=headers, json=body)
        rest = await http.get(f"{served.url}/api/tasks", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 401 and "resource_metadata=" in refused.headers["www-authenticate"]
    assert rest.status_code == 401


async def test_the_metadata_names_the_realm_as_the_authorization_server(served: Served) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        metadata = (await http.get(f"{served.url}/.well-known/oauth-protected-resource")).json()
        realm = (await http.get(f"{served.realm.issuer}/.well-known/openid-configuration")).json()
    assert metadata["authorization_servers"] == [served.realm.issuer] == [realm["issuer"]]
    assert metadata["resource"] == f"{served.url}/mcp"
    assert "S256" in realm["code_challenge_methods_supported"] and realm["registration_endpoint"]
