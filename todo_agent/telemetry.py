"""What a role's app gets for observability: the request spans, request metrics and
``GET /metrics`` (Prometheus text). The parts add their own metric sources and spans; the
setup itself is ``observability`` (a leaf package).

    configure_for(role)           # before bootstrap: tracing on or off, logs as lines or JSON
    FastAPI(..., telemetry=request_spans())   # FastAPI's own request spans, when tracing is on
    install(app, sources)         # in create_app

``/metrics`` answers the operator only (``todo_agent.edge``: ``APP_API_TOKEN`` or a loopback
peer, as the sidecar-only routes): a scrape in Kubernetes comes from inside the cluster with
the token, or through the pod's loopback (a sidecar scraper). The body is the process's
metrics, then the texts the role's sources give (the outbox backlog read from the database, the
relay child's own: ``events.wiring.metrics_sources``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Final

from fastapi import FastAPI
from fastapi.responses import Response
from fastapi.telemetry import TelemetryConfig
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from observability import tracing
from observability.logs import configure_logging
from observability.metrics import HTTP_DURATION, HTTP_REQUESTS, exposition

METRICS_PATH: Final = "/metrics"
MetricsSource = Callable[[], bytes]


def service_name(role: str) -> str:
    """The default ``service.name`` of a role's spans (``OTEL_SERVICE_NAME`` overrides it)."""
    return "todo-agent" if role == "all" else f"todo-{role}"


def configure_for(role: str, log_level: str = "INFO") -> bool:
    """Logging and tracing for a process serving ``role``; returns whether tracing is on."""
    configure_logging(log_level)
    return tracing.configure(service_name(role))


def request_spans() -> TelemetryConfig:
    """FastAPI's telemetry settings for a role's app: a SERVER span per request, named after the
    matched route (``POST /api/tasks/{task_id}``) and continuing an incoming ``traceparent``,
    made by FastAPI itself once a tracer provider is installed (tracing on; off, it costs a
    check per request). No spans for dependency resolution, the endpoint and serialisation (a
    write's use case span covers its work), no OpenTelemetry metrics or logs (``/metrics`` is
    Prometheus; logs are lines), and none for probes, scrapes and daprd's deliveries
    (``tracing.UNTRACED_PATHS``). It replaced the ASGI instrumentation's middleware, whose
    span carried thirteen attributes to FastAPI's eight (the REST write's CPU with tracing on:
    ``benchmarks/README.md``)."""
    return {"operation_spans": False, "metrics": False, "logs": False, "auto_configure": False,
            "exclude": tracing.untraced_request}  # fmt: skip


def install(app: FastAPI, sources: Sequence[MetricsSource] = ()) -> None:
    """Request metrics for ``app`` and its ``GET /metrics``: the process's metrics, then the
    text each of ``sources`` gives (the relay's part: ``events.wiring.metrics_sources``)."""
    app.add_middleware(RequestMetrics)

    @app.get(METRICS_PATH, include_in_schema=False)
    def metrics() -> Response:
        body, content_type = exposition(extra=[source() for source in sources])
        return Response(body, media_type=content_type)


class RequestMetrics:
    """``todo_http_requests_total`` and ``todo_http_request_duration_seconds`` by route
    template (``/api/tasks/{task_id}``, never the raw path: ids would make a series each)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            route, method = _route_of(scope), scope.get("method", "")
            if route != METRICS_PATH:
                HTTP_REQUESTS.labels(route=route, method=method, status=str(status)).inc()
                HTTP_DURATION.labels(route=route, method=method).observe(time.perf_counter() - started)


def _route_of(scope: Scope) -> str:
    route = scope.get("route")
    if route is None:
        return "(unmatched)"
    if isinstance(route, Mount):  # the web UI's files: one series for all of them
        return f"{route.path}/{{path}}"
    return str(getattr(route, "path", "(unmatched)"))
