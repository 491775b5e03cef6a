"""The outbox relay's route and lifespan, as a role that relays mounts them (``todo_agent.api``).

    app.include_router(metrics_router(relay, relay_process, hub))   # GET /metrics/outbox
    sources = metrics_sources(relay, relay_process, engine)         # for GET /metrics

With Dapr the relay runs in a child process of the role (``events.relay_process``: off the
app's GIL) and publishes through the sidecar; otherwise ``OutboxRelay.running`` runs it on the
app's loop into the in-process bus, next to the WebSockets its handlers write to.

``GET /metrics`` (Prometheus, ``todo_agent.telemetry``) takes the relay's part from
:func:`metrics_sources`: the outbox backlog read from the database at scrape time, the relay child's
up/restarts, and the relay's own metrics (from the child in Dapr mode).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fastapi import APIRouter
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from events.realtime import WebSocketHub
from events.relay import OutboxRelay, outbox_gauges
from events.relay_process import RelayProcess
from observability.metrics import OutboxCollector, relay_exposition


def metrics_router(relay: OutboxRelay, child: RelayProcess | None, hub: WebSocketHub | None) -> APIRouter:
    """``GET /metrics/outbox``: the relay's backlog, age, counters and lag (the child's while it
    answers, else the database's view), and the WebSocket hub's counters where there is one."""
    routes = APIRouter()

    @routes.get("/metrics/outbox", tags=["health"], summary="Outbox relay: backlog, age, counters, lag")
    def outbox_metrics() -> dict[str, Any]:
        running = child if child is not None and child.supervised else None
        try:
            metrics = running.metrics() if running is not None else relay.metrics()
        except RuntimeError as exc:  # the relay process is down or busy: the database's view
            assert running is not None
            metrics = relay.metrics()
            metrics["process"] = {**running.status(), "error": str(exc)}
        if hub is not None:
            metrics["websockets"] = {
                "connections": hub.connection_count(), "delivered": hub.delivered,
                "dropped_clients": hub.dropped_clients,
            }  # fmt: skip
        return metrics

    return routes


def metrics_sources(
    relay: OutboxRelay, child: RelayProcess | None, engine: Engine
) -> list[Callable[[], bytes]]:
    """The relay's part of ``GET /metrics``, each a callable giving Prometheus text."""
    registry = CollectorRegistry()
    registry.register(OutboxCollector(lambda: outbox_gauges(engine)))
    if child is not None:
        registry.register(_RelayProcessCollector(child))

    def relay_text() -> bytes:
        """The relay's own metrics: the child's (Dapr mode) or this process's; a child that does
        not answer is left out of the scrape (its metrics come back with it)."""
        if child is None or not child.supervised:
            return relay_exposition() if child is None else b""
        try:
            return child.prometheus()
        except RuntimeError:
            return b""

    return [lambda: generate_latest(registry), relay_text]


class _RelayProcessCollector(Collector):
    """``todo_relay_process_up`` and ``todo_relay_process_restarts`` of the Dapr-mode relay child."""

    def __init__(self, child: RelayProcess) -> None:
        self._child = child

    def collect(self) -> Iterable[Metric]:
        status = self._child.status()
        return [
            GaugeMetricFamily("todo_relay_process_up", "The relay's child process runs",
                              value=1 if status["alive"] else 0),
            CounterMetricFamily("todo_relay_process_restarts", "Times the relay's child process was "
                                "started again after it died", value=status["restarts"]),
        ]  # fmt: skip
