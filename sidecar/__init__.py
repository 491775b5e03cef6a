"""The Dapr sidecar over HTTP: one address and API token, one pool of connections, for every
building block the app uses (publish, state, jobs). A leaf: it imports none of the parts.

    address = SidecarAddress(http_url="http://127.0.0.1:3500", api_token=None)
    sidecar = Sidecar(address)
    status, body = await sidecar.call("POST", sidecar.url("/v1.0/publish/kafka-pubsub/task-events"),
                                      data=b"{...}", headers={"content-type": "application/json"})
    await sidecar.aclose()      # the next call opens a new pool

It talks aiohttp (a fraction of httpx's CPU per request) over keep-alive connections opened on
first use in the running loop (the client may be built before any loop runs), sends
``dapr-api-token`` on every call when there is one, and bounds every call by a timeout, so a
sidecar that is down or stuck fails the call (``SidecarUnreachable``) instead of holding it.
With tracing on, a call given a ``span`` name is a client span (``dapr state read``) that sends
its ``traceparent`` to daprd, whose own span of the call joins the trace.
The adapters (``events.publishers.DaprPublisher``, ``agent.dapr_state.DaprStateClient``,
``events.reminders.jobs.DaprJobScheduler``) map the status and body to their own errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
from opentelemetry.trace import SpanKind, StatusCode
from yarl import URL

from observability import tracing

_KEEP_ALIVE: Final = 5.0  # seconds an idle connection to the sidecar stays open
_CONNECT_TIMEOUT: Final = 2.0  # the sidecar is on this host: a longer wait means it is not there


@dataclass(frozen=True)
class SidecarAddress:
    """Where the sidecar listens and the token it expects (plain values: a child process gets it)."""

    http_url: str
    api_token: str | None = None
    grpc_address: str | None = None  # for the Dapr SDK's gRPC client, where one is used

    @classmethod
    def local(
        cls, http_port: int, *, api_token: str | None = None, grpc_port: int | None = None
    ) -> SidecarAddress:
        """The sidecar beside this process (``DAPR_HTTP_PORT``, ``DAPR_GRPC_PORT``, ``DAPR_API_TOKEN``)."""
        grpc = f"127.0.0.1:{grpc_port}" if grpc_port else None
        return cls(http_url=f"http://127.0.0.1:{http_port}", api_token=api_token, grpc_address=grpc)


class SidecarUnreachable(Exception):
    """The sidecar did not answer: refused, reset, or no answer within the timeout.

    ``where``: the sidecar's address; ``reason``: "did not answer within 10 s" or "is unreachable
    (ClientConnectorError: ...)"; ``error``: the client's own exception."""

    def __init__(self, where: str, reason: str, error: BaseException) -> None:
        super().__init__(f"the Dapr sidecar at {where} {reason}")
        self.where, self.reason, self.error = where, reason, error


class Sidecar:
    """One HTTP client to daprd, shared by the adapters of one process."""

    def __init__(self, address: SidecarAddress, *, timeout: float = 10.0) -> None:
        self.address = address
        self.timeout = timeout
        self._base = address.http_url.rstrip("/")
        self._headers = {"dapr-api-token": address.api_token} if address.api_token else {}
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def at(cls, http_url: str, *, api_token: str | None = None, timeout: float = 10.0) -> Sidecar:
        return cls(SidecarAddress(http_url=http_url, api_token=api_token), timeout=timeout)

    def url(self, path: str) -> URL:
        """``path`` on the sidecar (add a query with ``URL.with_query``; keep a URL used often)."""
        return URL(f"{self._base}{path}")

    async def call(
        self,
        method: str,
        url: URL,
        *,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        span: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> tuple[int, bytes]:
        """The status and body of one request; ``SidecarUnreachable`` saying why it got none.
        ``span``: with tracing on, the call is a client span of this name (with ``attributes``)."""
        if span is None or not tracing.is_on():
            return await self._send(method, url, data, headers)
        described = {**(attributes or {}), "http.request.method": method, "server.address": url.host or "",
                     "server.port": url.port or 0}  # fmt: skip
        with tracing.span(span, kind=SpanKind.CLIENT, attributes=described) as current:
            status, body = await self._send(method, url, data, tracing.inject(dict(headers or {})))
            if current is not None:
                current.set_attribute("http.response.status_code", status)
                if status >= 400:
                    current.set_status(StatusCode.ERROR)
            return status, body

    async def _send(
        self, method: str, url: URL, data: bytes | None, headers: dict[str, str] | None
    ) -> tuple[int, bytes]:
        try:
            async with self._client().request(method, url, data=data, headers=headers) as response:
                return response.status, await response.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            if isinstance(exc, TimeoutError):
                reason = f"did not answer within {self.timeout:g} s"
            else:
                reason = f"is unreachable ({type(exc).__name__}: {exc})" if str(exc) else "is unreachable"
            raise SidecarUnreachable(self._base, reason, exc) from exc

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _client(self) -> aiohttp.ClientSession:
        """The session, opened on first use: it belongs to the loop that runs the calls."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(keepalive_timeout=_KEEP_ALIVE),
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout, sock_connect=_CONNECT_TIMEOUT),
                cookie_jar=aiohttp.DummyCookieJar(),  # the sidecar sets none; skip the jar's work
            )
        return self._session
