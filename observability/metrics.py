"""The Prometheus metrics every role serves at ``GET /metrics`` (text exposition format).

The metrics live in ``prometheus_client``'s process-wide registry; the code that does the work
updates them (``TOOL_CALLS.labels(tool="add_task", outcome="ok").inc()``). What only the
database knows (the outbox backlog and the age of its oldest row) is read when scraped, by a
collector the role's app registers (:class:`OutboxCollector`); what another process counts (the
Dapr-mode relay runs in a child process) is appended as that process's own exposition text.

| metric | type | labels |
|---|---|---|
| ``todo_http_requests_total`` | counter | route, method, status |
| ``todo_http_request_duration_seconds`` | histogram | route, method |
| ``todo_mcp_tool_calls_total`` | counter | tool, outcome (ok, refused, error) |
| ``todo_mcp_tool_duration_seconds`` | histogram | tool |
| ``todo_outbox_backlog`` | gauge (scrape) | - |
| ``todo_outbox_oldest_pending_age_seconds`` | gauge (scrape) | - |
| ``todo_outbox_failed_rows`` | gauge (scrape) | - |
| ``todo_relay_publish_duration_seconds`` | histogram | topic |
| ``todo_relay_published_total`` / ``todo_relay_failures_total`` | counter | - |
| ``todo_relay_lag_seconds`` | histogram | - (row written → marked sent) |
| ``todo_relay_round_phase_seconds`` | histogram | phase (claim, publish, mark: a successful round) |
| ``todo_relay_round_rows`` | histogram | - (rows a successful round sent) |
| ``todo_relay_backoff_seconds`` | gauge | - (0 while publishing; the wait after a failed round) |
| ``todo_relay_process_up`` / ``_restarts_total`` / ``_pid`` | gauge, counter, gauge (scrape) | - (Dapr) |
| ``todo_websocket_connections`` | gauge (scrape) | - (open ``/ws`` connections of this replica) |
| ``todo_websocket_delivered_total`` / ``_dropped_clients_total`` | counter (scrape) | - |
| ``todo_consumer_events_total`` | counter | consumer, topic, outcome (SUCCESS, RETRY, DROP) |
| ``todo_consumer_lag_seconds`` | histogram | consumer, topic (event written → applied) |
| ``todo_consumer_dead_letters_total`` | counter | consumer, topic (answered DROP: to ``<topic>-dlq``) |
| ``todo_reminder_lateness_seconds`` | histogram | - (fired − due ``remind_at``) |
| ``todo_notifications_total`` | counter | channel (in_app, email, webhook), outcome |
| ``todo_chat_turn_phase_seconds`` | histogram | phase (turn, model, tool) |
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

disable_created_metrics()  # no ``*_created`` series beside every counter and histogram

_FAST: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SLOW: Final = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

HTTP_REQUESTS: Final = Counter(
    "todo_http_requests", "HTTP requests answered, by route template", ["route", "method", "status"]
)
HTTP_DURATION: Final = Histogram(
    "todo_http_request_duration_seconds", "HTTP request latency by route template", ["route", "method"],
    buckets=_FAST,
)  # fmt: skip
TOOL_CALLS: Final = Counter("todo_mcp_tool_calls", "MCP tool calls by tool and outcome", ["tool", "outcome"])
TOOL_DURATION: Final = Histogram(
    "todo_mcp_tool_duration_seconds", "MCP tool call latency", ["tool"], buckets=_FAST
)
#: The relay's own registry: in Dapr mode the relay runs in a child process, whose scrape text
#: of this registry replaces the parent's (one family must not appear twice in a scrape).
RELAY_REGISTRY: Final = CollectorRegistry()
RELAY_PUBLISH: Final = Histogram(
    "todo_relay_publish_duration_seconds", "One publish request of the outbox relay to the bus",
    ["topic"], buckets=_FAST, registry=RELAY_REGISTRY,
)  # fmt: skip
RELAY_PUBLISHED: Final = Counter(
    "todo_relay_published", "Outbox rows the relay marked sent", registry=RELAY_REGISTRY
)
RELAY_FAILURES: Final = Counter(
    "todo_relay_failures", "Relay rounds that failed to publish (then retried)", registry=RELAY_REGISTRY
)
RELAY_LAG: Final = Histogram(
    "todo_relay_lag_seconds", "From an outbox row written to the relay marking it sent",
    buckets=(0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
             10.0, 30.0, 60.0, 300.0),
    registry=RELAY_REGISTRY,
)  # fmt: skip
RELAY_ROUND_PHASES: Final = Histogram(
    "todo_relay_round_phase_seconds", "Where a successful relay round's time goes: claim, publish, mark",
    ["phase"], buckets=_FAST, registry=RELAY_REGISTRY,
)  # fmt: skip
RELAY_ROUND_ROWS: Final = Histogram(
    "todo_relay_round_rows", "Rows a successful relay round sent",
    buckets=(1, 2, 3, 5, 10, 25, 50, 100, 200, 250), registry=RELAY_REGISTRY,
)  # fmt: skip
RELAY_BACKOFF: Final = Gauge(
    "todo_relay_backoff_seconds", "How long the relay waits after a failed round (0 while publishing)",
    registry=RELAY_REGISTRY,
)  # fmt: skip
CONSUMER_EVENTS: Final = Counter(
    "todo_consumer_events", "Deliveries a consumer answered", ["consumer", "topic", "outcome"]
)
CONSUMER_LAG: Final = Histogram(
    "todo_consumer_lag_seconds", "From the event's time (outbox row written) to its effect applied",
    ["consumer", "topic"], buckets=_SLOW,
)  # fmt: skip
DEAD_LETTERS: Final = Counter(
    "todo_consumer_dead_letters", "Deliveries answered DROP (Dapr moves them to <topic>-dlq)",
    ["consumer", "topic"],
)  # fmt: skip
REMINDER_LATENESS: Final = Histogram(
    "todo_reminder_lateness_seconds", "How long after its remind_at a reminder fired", buckets=_SLOW
)
NOTIFICATIONS: Final = Counter(
    "todo_notifications", "Notification deliveries by channel and outcome", ["channel", "outcome"]
)
CHAT_PHASES: Final = Histogram(
    "todo_chat_turn_phase_seconds", "Chat turn time: the whole turn, model calls, tool calls", ["phase"],
    buckets=_SLOW,
)  # fmt: skip


class OutboxCollector(Collector):
    """Reads the outbox's backlog at scrape time; ``read`` returns ``(backlog, oldest age in
    seconds, failed rows)``. A database that does not answer leaves the gauges out of the scrape
    (an absent series, not a false zero)."""

    def __init__(self, read: Callable[[], tuple[int, float, int]]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        try:
            backlog, age, failed = self._read()
        except Exception:  # the database is down: say nothing rather than something false
            return []
        return [
            GaugeMetricFamily("todo_outbox_backlog", "Outbox rows not yet published", value=backlog),
            GaugeMetricFamily(
                "todo_outbox_oldest_pending_age_seconds",
                "Age of the oldest unpublished outbox row",
                value=age,
            ),
            GaugeMetricFamily(
                "todo_outbox_failed_rows", "Outbox rows the bus refused for good (not retried)", value=failed
            ),
        ]


def exposition(*registries: CollectorRegistry, extra: Iterable[bytes] = ()) -> tuple[bytes, str]:
    """The scrape body (the process registry, then ``registries``, then ``extra`` texts) and its
    content type."""
    parts = [generate_latest(REGISTRY), *(generate_latest(r) for r in registries), *extra]
    return b"".join(parts), CONTENT_TYPE_LATEST


def relay_exposition() -> bytes:
    """The relay's metrics alone (the relay's child process sends them to its parent's scrape)."""
    return generate_latest(RELAY_REGISTRY)


class Stopwatch:
    """``with Stopwatch() as w: ...`` then ``w.seconds``."""

    def __init__(self) -> None:
        self.started = 0.0
        self.seconds = 0.0

    def __enter__(self) -> Stopwatch:
        self.started = time.perf_counter()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.seconds = time.perf_counter() - self.started
