"""What a role that relays or serves ``/ws`` adds to ``GET /metrics`` (``todo_agent.api``).

    sources = metrics_sources(relay, relay_process, engine)   # the relay's part
    sources.append(hub_metrics_source(hub))                    # the WebSocket hub's part

With Dapr the relay runs in a child process of the role (``events.relay_process``: off the
app's GIL) and publishes through the sidecar; otherwise ``OutboxRelay.running`` runs it on the
app's loop into the in-process bus, next to the WebSockets its handlers write to.

``GET /metrics`` (Prometheus, ``todo_agent.telemetry``) takes the relay's part from
:func:`metrics_sources`: the outbox backlog read from the database at scrape time, the relay
child's up/restarts/pid, and the relay's own metrics (counters, lag, round phases; from the
child in Dapr mode); and the hub's connections and deliveries from :func:`hub_metrics_source`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from events.realtime import WebSocketHub
from events.relay import OutboxRelay, outbox_gauges
from events.relay_process import RelayProcess
from observability.metrics import OutboxCollector, relay_exposition


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


def hub_metrics_source(hub: WebSocketHub) -> Callable[[], bytes]:
    """The hub's part of ``GET /metrics``: its open connections and deliveries."""
    registry = CollectorRegistry()
    registry.register(_HubCollector(hub))
    return lambda: generate_latest(registry)


class _RelayProcessCollector(Collector):
    """``todo_relay_process_up``, ``_restarts`` and ``_pid`` of the Dapr-mode relay child (no pid
    while none runs)."""

    def __init__(self, child: RelayProcess) -> None:
        self._child = child

    def collect(self) -> Iterable[Metric]:
        status = self._child.status()
        found: list[Metric] = [
            GaugeMetricFamily("todo_relay_process_up", "The relay's child process runs",
                              value=1 if status["alive"] else 0),
            CounterMetricFamily("todo_relay_process_restarts", "Times the relay's child process was "
                                "started again after it died", value=status["restarts"]),
        ]  # fmt: skip
        if status["alive"] and status["pid"] is not None:
            found.append(GaugeMetricFamily("todo_relay_process_pid", "The relay child's process id",
                                           value=status["pid"]))  # fmt: skip
        return found


class _HubCollector(Collector):
    """``todo_websocket_connections`` and the hub's delivery counters, read at scrape time."""

    def __init__(self, hub: WebSocketHub) -> None:
        self._hub = hub

    def collect(self) -> Iterable[Metric]:
        hub = self._hub
        return [
            GaugeMetricFamily("todo_websocket_connections", "Open /ws connections of this replica",
                              value=hub.connection_count()),
            CounterMetricFamily("todo_websocket_delivered", "Messages queued to open /ws connections",
                                value=hub.delivered),
            CounterMetricFamily("todo_websocket_dropped_clients", "Connections closed for falling "
                                "behind (they resume from their last event id)", value=hub.dropped_clients),
        ]  # fmt: skip
