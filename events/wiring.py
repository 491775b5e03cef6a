"""The outbox relay's route and lifespan, as a role that relays mounts them (``todo_agent.api``).

    app.include_router(metrics_router(relay, relay_process, hub))   # GET /metrics/outbox

With Dapr the relay runs in a child process of the role (``events.relay_process``: off the
app's GIL) and publishes through the sidecar; otherwise ``OutboxRelay.running`` runs it on the
app's loop into the in-process bus, next to the WebSockets its handlers write to.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from events.realtime import WebSocketHub
from events.relay import OutboxRelay
from events.relay_process import RelayProcess


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
