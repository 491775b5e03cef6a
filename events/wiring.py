"""What the events part adds to each process role (see ``todo_agent.roles``).

| role          | routes                                          | background  |
|---------------|-------------------------------------------------|-------------|
| api           | /ws, task-updates subscriber, /api/audit        | outbox relay |
| recurrence    | task-events subscriber (next occurrence)        | outbox relay |
| audit         | task-events subscriber (audit log), /api/audit  | -           |
| notifications | -                                               | outbox relay |
| all (embedded)| everything above, through the in-process bus    | outbox relay |

Every role with a relay adds the outbox's and the relay's metrics to ``GET /metrics`` (Prometheus)
and serves ``GET /metrics/outbox`` (the relay's JSON diagnostics: lag percentiles, round phases,
its process's pid). With Dapr (``DAPR_HTTP_PORT``) the
relay runs in a child process of the role (``events.relay_process``: off the app's GIL) and
publishes through the sidecar; otherwise it runs on the app's loop into the in-process bus.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any, Final

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from events import audit, inprocess, realtime, recurrence
from events.inprocess import bus_of
from events.ports import EventPublisher
from events.publishers import DaprPublisher, InProcessPublisher
from events.relay import OutboxRelay, outbox_gauges
from events.relay_process import relay_process
from events.subscriber import mount
from observability.metrics import OutboxCollector, relay_exposition

RELAY_ROLES: Final = ("api", "recurrence", "notifications", "all")


def publisher_of(container: Any) -> EventPublisher:
    """The container's publisher (``container.extras["publisher"]``), created on first use."""
    if "publisher" not in container.extras:
        settings = container.settings
        if settings.dapr_enabled:
            if settings.dapr_http_port is None:
                raise RuntimeError("Dapr mode needs DAPR_HTTP_PORT for publishing events.")
            token = settings.dapr_api_token.get_secret_value() if settings.dapr_api_token else None
            container.extras["publisher"] = DaprPublisher(
                base_url=f"http://127.0.0.1:{settings.dapr_http_port}",
                pubsub=settings.pubsub_name,
                api_token=token,
            )
        else:
            container.extras["publisher"] = InProcessPublisher(bus_of(container))
    publisher: EventPublisher = container.extras["publisher"]
    return publisher


def relay_of(container: Any) -> OutboxRelay:
    if "relay" not in container.extras:
        container.extras["relay"] = OutboxRelay(container.engine, publisher_of(container))
    relay: OutboxRelay = container.extras["relay"]
    return relay


def extensions(container: Any) -> list[Any]:
    role = container.role
    hooks: list[Any] = []
    if role in ("api", "all"):
        hooks += [_realtime, audit.install_routes]
    if role in ("recurrence", "all"):
        hooks.append(_recurrence)
    if role == "audit":
        hooks += [_audit, audit.install_routes]
    elif role == "all":
        hooks.append(_audit)
    if role in RELAY_ROLES:
        hooks.append(_metrics)
    if not container.settings.dapr_enabled:
        hooks.append(inprocess.install_routes)
    return hooks


def lifespans(container: Any) -> list[Any]:
    return [_relay_running] if container.role in RELAY_ROLES else []


def _realtime(app: FastAPI, container: Any) -> None:
    realtime.install(app, container)
    mount(app, container, realtime.realtime_subscription(container))


def _recurrence(app: FastAPI, container: Any) -> None:
    mount(app, container, recurrence.recurrence_subscription(container))


def _audit(app: FastAPI, container: Any) -> None:
    mount(app, container, audit.audit_subscription(container))


def _metrics(app: FastAPI, container: Any) -> None:
    """The relay's Prometheus metrics in ``GET /metrics`` (``todo_agent.telemetry``): the outbox
    backlog read from the database at scrape time, and the relay's own (from its child process
    in Dapr mode); and the relay's JSON diagnostics at ``GET /metrics/outbox``."""
    registry = CollectorRegistry()
    registry.register(OutboxCollector(lambda: outbox_gauges(container.engine)))
    registry.register(_RelayProcessCollector(container))
    sources = container.extras.setdefault("metrics_sources", [])
    sources.append(lambda: generate_latest(registry))
    sources.append(lambda: _relay_exposition(container))

    @app.get("/metrics/outbox", tags=["health"], summary="Outbox relay: backlog, age, counters, lag")
    def outbox_metrics() -> dict[str, Any]:
        child = container.extras.get("relay_process")
        try:
            metrics = child.metrics() if child is not None else relay_of(container).metrics()
        except RuntimeError as exc:  # the relay process is down or busy: the database's view
            metrics = relay_of(container).metrics()
            metrics["process"] = {**child.status(), "error": str(exc)}
        hub = container.extras.get("hub")
        if hub is not None:
            metrics["websockets"] = {
                "connections": hub.connection_count(), "delivered": hub.delivered,
                "dropped_clients": hub.dropped_clients,
            }  # fmt: skip
        return metrics


class _RelayProcessCollector(Collector):
    """``todo_relay_process_up`` and ``todo_relay_process_restarts`` of the Dapr-mode relay child
    (absent in the embedded default, where the relay runs on the app's loop)."""

    def __init__(self, container: Any) -> None:
        self._container = container

    def collect(self) -> Iterable[Metric]:
        child = self._container.extras.get("relay_process")
        if child is None:
            return []
        status = child.status()
        return [
            GaugeMetricFamily("todo_relay_process_up", "The relay's child process runs",
                              value=1 if status["alive"] else 0),
            CounterMetricFamily("todo_relay_process_restarts", "Times the relay's child process was "
                                "started again after it died", value=status["restarts"]),
        ]  # fmt: skip


def _relay_exposition(container: Any) -> bytes:
    """The relay's own metrics: the child's (Dapr mode) or this process's; a child that does not
    answer is left out of the scrape (its metrics come back with it)."""
    child = container.extras.get("relay_process")
    if child is None:
        return relay_exposition()
    try:
        return child.prometheus()
    except RuntimeError:
        return b""


@contextlib.asynccontextmanager
async def _relay_running(container: Any) -> AsyncIterator[None]:
    """With Dapr the relay runs in a child process (``events.relay_process``); the in-process
    bus runs on the app's loop, next to the WebSockets its handlers write to."""
    if container.settings.dapr_enabled:
        async with relay_process(container) as child:
            container.extras["relay_process"] = child
            try:
                yield
            finally:
                container.extras.pop("relay_process", None)
        return
    async with relay_of(container).running(container.uow):
        yield
