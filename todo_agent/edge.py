"""The edge of every role's app: one ASGI middleware that decides, before any route runs or any
body is read, whether a request may reach that route, and that adds the security headers.

    app.add_middleware(EdgeGuard, policy=policy)   # what ``create_app`` does
    edge_of(app).sidecar_only("/events/task-updates")
    edge_of(app).sidecar_only("/job/", prefix=True)

For every HTTP request and WebSocket handshake, in this order:

1. **Host** must be a loopback name (``127.0.0.1``, ``localhost``, ``[::1]``, any port: a browser
   sends those only to this machine), the host the server was bound to, the host of
   ``TODO_PUBLIC_URL`` or a ``TODO_ALLOWED_HOSTS`` entry (``name``, ``name:port`` or ``name:*``),
   else 421. This stops DNS rebinding on every route. ``/healthz`` and ``/readyz`` are exempt:
   orchestrators probe them by the pod's address.
2. **Origin**, when a browser sends one, must be this server's own origin (the ``Host`` it asked
   for) or a ``TODO_ALLOWED_HOSTS`` entry, else 403: no other page, not even one on another
   loopback port, can drive the API, ``/mcp``, chat or ``/ws``.
3. **Caller**, by route:
   - sidecar routes (pub/sub deliveries, ``POST /job/{name}``): the ``dapr-api-token`` header
     must equal ``APP_API_TOKEN``; without ``APP_API_TOKEN`` (development only: production with
     Dapr refuses to start) only loopback peers may call them, else 401;
   - ``/metrics`` (Prometheus): ``APP_API_TOKEN`` (as ``dapr-api-token`` or ``Authorization:
     Bearer``, what a Prometheus scrape config sends) or a loopback peer, else 403; a scrape
     with the token may name the pod by its address (exempt from the Host rule, as the probes);
   - ``/api/*`` with sign-in on: a bearer token the verifier accepts, checked before the body is
     read, else 401 (the verified identity is handed to the route in ``request.state``).
4. **Body** at most ``TODO_MAX_BODY_BYTES`` (sidecar routes are exempt: only the sidecar reaches
   them, with bulk deliveries), else 413.
5. Every HTTP reply gets a Content-Security-Policy, ``X-Frame-Options: DENY``,
   ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer``.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

from fastapi import FastAPI

from auth.tokens import InvalidToken, JwtVerifier

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_NAMES: Final = frozenset({"127.0.0.1", "localhost", "[::1]"})
PROBES: Final = frozenset({"/healthz", "/readyz"})
OPERATOR_PATHS: Final = frozenset({"/metrics"})
USER_PREFIX: Final = "/api/"
DOCS_PATHS: Final = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})

#: The web app is same-origin ES modules and one stylesheet: nothing inline, nothing from elsewhere.
PAGE_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
#: FastAPI's /docs and /redoc load Swagger UI / ReDoc from jsDelivr with an inline start script.
DOCS_POLICY: Final = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src 'self' https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com "
    "https://cdn.redoc.ly; worker-src 'self' blob:; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
_HEADERS: Final = (
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)
_DEFAULT_PORTS: Final = {"http": "80", "https": "443", "ws": "80", "wss": "443"}


def split_authority(authority: str) -> tuple[str, str | None]:
    """``("name", "port" | None)`` of a ``Host`` value, lower-cased; IPv6 keeps its brackets."""
    value = authority.strip().lower()
    if value.startswith("["):
        name, _, rest = value.partition("]")
        return f"{name}]", rest[1:] if rest.startswith(":") else None
    if value.count(":") == 1:
        name, port = value.split(":")
        return name.rstrip("."), port
    if ":" in value:  # a bare IPv6 address, as given to --host
        return f"[{value}]", None
    return value.rstrip("."), None


@dataclass(frozen=True)
class HostRule:
    """One allowed host: a name, with an exact port or any port (``None``)."""

    name: str
    port: str | None = None

    @classmethod
    def parse(cls, entry: str) -> HostRule:
        name, port = split_authority(entry)
        return cls(name, None if port in (None, "*") else port)

    def matches(self, name: str, port: str | None) -> bool:
        return name == self.name and (self.port is None or self.port == port)


@dataclass
class EdgePolicy:
    """What the guard checks; built from the container's settings by ``EdgePolicy.of``."""

    hosts: list[HostRule]
    configured: list[HostRule]
    max_body_bytes: int
    app_token: str | None = None
    verifier: JwtVerifier | None = None
    sidecar_paths: set[str] = field(default_factory=set)
    sidecar_prefixes: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, container: Any) -> EdgePolicy:
        settings = container.settings
        configured = [HostRule.parse(entry) for entry in settings.allowed_hosts]
        names = set(LOOPBACK_NAMES) | {split_authority(settings.host)[0]}
        if settings.public_url:
            names.add(split_authority(urlsplit(settings.public_url).netloc)[0])
        token = settings.app_api_token.get_secret_value() if settings.app_api_token else None
        return cls(
            hosts=[HostRule(name) for name in sorted(names)] + configured,
            configured=configured,
            max_body_bytes=settings.max_body_bytes,
            app_token=token,
            verifier=container.verifier,
        )

    def sidecar_only(self, path: str, *, prefix: bool = False) -> None:
        """Only the Dapr sidecar may call ``path`` (or every path under it, with ``prefix``)."""
        (self.sidecar_prefixes if prefix else self.sidecar_paths).add(path)

    def is_sidecar_route(self, path: str) -> bool:
        return path in self.sidecar_paths or any(path.startswith(p) for p in self.sidecar_prefixes)

    def host_allowed(self, host: str) -> bool:
        name, port = split_authority(host)
        return bool(name) and any(rule.matches(name, port) for rule in self.hosts)

    def origin_allowed(self, origin: str, host: str) -> bool:
        parts = urlsplit(origin)
        if parts.scheme not in _DEFAULT_PORTS or not parts.netloc:
            return False  # "null" (sandboxed pages, file://) and anything else that is no origin
        default = _DEFAULT_PORTS[parts.scheme]
        name, port = split_authority(parts.netloc)
        host_name, host_port = split_authority(host)
        if name == host_name and (port or default) == (host_port or default):
            return True
        return any(rule.matches(name, port or default) for rule in self.configured)


def edge_of(app: FastAPI) -> EdgePolicy:
    """The policy of an app built by ``todo_agent.api.create_app``."""
    policy = getattr(app.state, "edge", None)
    if not isinstance(policy, EdgePolicy):
        raise RuntimeError("This app has no edge guard: build it with todo_agent.api.create_app.")
    return policy


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def from_loopback(scope: Scope) -> bool:
    client = scope.get("client")
    if not client:
        return False
    try:
        address = ipaddress.ip_address(client[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


class Refusal(Exception):
    """A request the edge turns away: HTTP status, a person-readable reason, extra headers."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


class EdgeGuard:
    """The ASGI middleware (see the module docstring for the rules, in order)."""

    def __init__(self, app: ASGIApp, policy: EdgePolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        try:
            await self._admit(scope)
        except Refusal as refusal:
            await _refuse(scope, send, refusal)
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        await self._serve_http(scope, receive, send)

    async def _admit(self, scope: Scope) -> None:
        path: str = scope.get("path", "")
        host = header(scope, b"host") or ""
        scrape = path in OPERATOR_PATHS and self._app_token_given(scope)
        if path not in PROBES and not scrape and not self.policy.host_allowed(host):
            raise Refusal(
                421,
                f"This server does not answer to the host name {host!r}; "
                "add it to TODO_ALLOWED_HOSTS if it is yours.",
            )
        origin = header(scope, b"origin")
        if origin is not None and not self.policy.origin_allowed(origin, host):
            raise Refusal(
                403,
                f"Requests from the page at {origin!r} are not allowed; "
                "add its host to TODO_ALLOWED_HOSTS if it is yours.",
            )
        if self.policy.is_sidecar_route(path):
            self._admit_sidecar(scope)
        elif path in OPERATOR_PATHS:
            self._admit_operator(scope)
        elif path.startswith(USER_PREFIX) and self.policy.verifier is not None:
            await self._admit_user(scope)

    def _app_token_given(self, scope: Scope) -> bool:
        expected = self.policy.app_token
        given = header(scope, b"dapr-api-token")
        if given is None and scope.get("path") in OPERATOR_PATHS:
            scheme, _, bearer = (header(scope, b"authorization") or "").partition(" ")
            given = bearer.strip() if scheme.lower() == "bearer" else None
        return expected is not None and given is not None and _same(given, expected)

    def _admit_sidecar(self, scope: Scope) -> None:
        if self.policy.app_token is None and from_loopback(scope):
            return
        if not self._app_token_given(scope):
            raise Refusal(401, "Only the Dapr sidecar may call this route (missing or wrong dapr-api-token).")

    def _admit_operator(self, scope: Scope) -> None:
        if not (from_loopback(scope) or self._app_token_given(scope)):
            raise Refusal(403, "Metrics are served to this machine or with the app API token only.")

    async def _admit_user(self, scope: Scope) -> None:
        assert self.policy.verifier is not None
        scheme, _, token = (header(scope, b"authorization") or "").partition(" ")
        unauthorized = {"WWW-Authenticate": 'Bearer realm="todo-agent"'}
        if scheme.lower() != "bearer" or not token.strip():
            raise Refusal(401, "Sign in: this server needs 'Authorization: Bearer <token>'.", unauthorized)
        try:
            identity = await self.policy.verifier.verify_async(token.strip())
        except InvalidToken as exc:
            raise Refusal(401, str(exc), unauthorized) from exc
        scope.setdefault("state", {})["identity"] = identity

    async def _serve_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = None if self.policy.is_sidecar_route(scope.get("path", "")) else self.policy.max_body_bytes
        declared = header(scope, b"content-length")
        if limit is not None and declared is not None and declared.strip().isdigit():
            if int(declared) > limit:
                await _refuse(scope, send, _too_large(limit))
                return
        capped = _CappedBody(receive, send, limit) if limit is not None else None
        policy = DOCS_POLICY if scope.get("path") in DOCS_PATHS else PAGE_POLICY

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                _add_headers(message, policy)
            await send(message)

        if capped is None:
            await self.app(scope, receive, send_with_headers)
            return
        capped.downstream = send_with_headers
        await self.app(scope, capped.receive, capped.send)


class _CappedBody:
    """Counts a streamed body; past the limit it answers 413 itself, tells the app the client
    left (``http.disconnect``) and drops whatever the app still sends."""

    def __init__(self, receive: Receive, send: Send, limit: int) -> None:
        self._receive = receive
        self.downstream = send
        self._limit = limit
        self._seen = 0
        self._started = False
        self._refused = False

    async def receive(self) -> Message:
        if self._refused:
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.request":
            self._seen += len(message.get("body", b""))
            if self._seen > self._limit:
                if not self._started:
                    await self.send(_response_start(_too_large(self._limit)))
                    await self.send(_response_body(_too_large(self._limit)))
                self._refused = True
                return {"type": "http.disconnect"}
        return message

    async def send(self, message: Message) -> None:
        if self._refused:
            return
        if message["type"] == "http.response.start":
            self._started = True
        await self.downstream(message)


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _too_large(limit: int) -> Refusal:
    detail = f"The request body is larger than {limit} bytes, the most this server takes."
    return Refusal(413, f"{detail} (TODO_MAX_BODY_BYTES)")


def _add_headers(message: Message, policy: str) -> None:
    present = {bytes(key).lower() for key, _ in message.get("headers", ())}
    extra = [(b"content-security-policy", policy.encode()), *_HEADERS]
    message["headers"] = [*message.get("headers", ()), *((k, v) for k, v in extra if k not in present)]


def _response_start(refusal: Refusal) -> Message:
    headers = [(b"content-type", b"application/json")]
    headers += [(k.lower().encode(), v.encode()) for k, v in refusal.headers.items()]
    message: Message = {"type": "http.response.start", "status": refusal.status, "headers": headers}
    _add_headers(message, PAGE_POLICY)
    return message


def _response_body(refusal: Refusal) -> Message:
    return {"type": "http.response.body", "body": json.dumps({"detail": refusal.detail}).encode()}


async def _refuse(scope: Scope, send: Send, refusal: Refusal) -> None:
    """An HTTP reply; for a WebSocket handshake the same reply where the server can send one
    (the ``websocket.http.response`` extension), else a close before accepting (HTTP 403)."""
    if scope["type"] == "http":
        await send(_response_start(refusal))
        await send(_response_body(refusal))
        return
    if "websocket.http.response" in scope.get("extensions", {}):
        start = _response_start(refusal)
        await send({**start, "type": "websocket.http.response.start"})
        await send({**_response_body(refusal), "type": "websocket.http.response.body"})
        return
    await send({"type": "websocket.close", "code": 1008, "reason": refusal.detail[:120]})
