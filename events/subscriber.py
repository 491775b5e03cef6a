"""Serve consumers (``Subscription``) as Dapr subscriber routes.

    app.include_router(router([Subscription(topic="task-events", route="/events/task-events",
                                            consumer="recurrence", handler=handle)]))

``POST <route>`` takes the CloudEvent daprd delivers (the edge guard lets only the
sidecar call it: ``dapr-api-token`` equal to ``APP_API_TOKEN``, or a loopback caller in development
without one), runs the handler and answers ``{"status": "SUCCESS" | "RETRY" | "DROP"}``; RETRY
and DROP are logged with the reason. A bulk delivery (``bulkSubscribe`` in the Subscription:
``{"entries": [...]}``) gets one status per entry (``{"statuses": [{"entryId", "status"}]}``).
Several subscriptions on one route (the "all" role) share it: the reply is RETRY if any
handler wants a retry, else DROP if any dropped. Which topic reaches
which route is declared in ``dapr-components/subscriptions.yaml`` (with dead-letter topics).
The composition root marks the routes sidecar-only at the edge guard (``routes_of``); in the
embedded default it registers the subscriptions with the in-process bus instead.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from events.ports import Delivery, Outcome, Subscription

log = logging.getLogger(__name__)

#: How long a bulk delivery runs its entries before it lets the loop's other work run. Yielding
#: after every entry made a batch wait behind every ready request once per entry: under load the
#: api then delivered fewer updates per second than it wrote, and the sockets fell seconds behind.
_SLICE: Final = 0.002


def routes_of(subscriptions: list[Subscription]) -> list[str]:
    """The routes daprd posts to, each once, in the subscriptions' order."""
    return list(dict.fromkeys(subscription.route for subscription in subscriptions))


def router(subscriptions: list[Subscription]) -> APIRouter:
    """One ``POST`` per route; subscriptions sharing a route share its delivery."""
    by_route: dict[str, list[Subscription]] = defaultdict(list)
    for subscription in subscriptions:
        by_route[subscription.route].append(subscription)
    routes = APIRouter()
    for route, sharing in by_route.items():
        _serve_route(routes, route, sharing)
    return routes


def _serve_route(routes: APIRouter, route: str, subscriptions: list[Subscription]) -> None:
    @routes.post(route, include_in_schema=False)
    async def receive(request: Request) -> JSONResponse:
        body = await request.body()
        bulk = _bulk_entries(body)
        if bulk is not None:  # bulkSubscribe: one status per entry
            statuses = []
            slice_ends = time.perf_counter() + _SLICE
            for entry_id, event in bulk:
                statuses.append(
                    {"entryId": entry_id, "status": (await _deliver(subscriptions, route, event)).value}
                )
                if time.perf_counter() > slice_ends:  # let the WebSocket senders and requests run
                    await asyncio.sleep(0)
                    slice_ends = time.perf_counter() + _SLICE
            return JSONResponse({"statuses": statuses})
        return JSONResponse({"status": (await _deliver(subscriptions, route, body)).value})


async def _deliver(subscriptions: list[Subscription], route: str, event: bytes | dict[str, Any]) -> Outcome:
    try:
        delivery = parse_delivery(event, subscriptions[0].topic)
    except ValueError as exc:
        log.warning("DROP on %s: not a CloudEvent (%s)", route, exc)
        return Outcome.DROP
    return combine([await _run(sub, delivery) for sub in subscriptions])


def _bulk_entries(body: bytes) -> list[tuple[str, bytes | dict[str, Any]]] | None:
    """``(entryId, event)`` of a bulk delivery (``"entries"``), or None for a single event."""
    if not body.startswith(b"{") or b'"entries"' not in body:
        return None
    try:
        envelope = json.loads(body)
    except json.JSONDecodeError:
        return None
    entries = envelope.get("entries") if isinstance(envelope, dict) else None
    if not isinstance(entries, list) or "specversion" in envelope:
        return None
    topic = envelope.get("topic")
    found: list[tuple[str, bytes | dict[str, Any]]] = []
    for entry in entries:
        event = entry.get("event")
        if isinstance(event, str):
            event = event.encode()
        if isinstance(event, dict) and topic and "topic" not in event:
            event = {**event, "topic": topic}
        found.append((str(entry.get("entryId")), event if isinstance(event, bytes | dict) else b""))
    return found


async def _run(subscription: Subscription, delivery: Delivery) -> Outcome:
    try:
        outcome = await subscription.handler(delivery)
    except Exception:
        log.exception(
            "RETRY %s event %s: the handler failed unexpectedly", subscription.consumer, delivery.id
        )
        return Outcome.RETRY
    return outcome


def combine(outcomes: list[Outcome]) -> Outcome:
    if Outcome.RETRY in outcomes:
        return Outcome.RETRY
    if Outcome.DROP in outcomes:
        return Outcome.DROP
    return Outcome.SUCCESS


def parse_delivery(body: bytes | dict[str, Any], default_topic: str) -> Delivery:
    """A ``Delivery`` from the JSON CloudEvent daprd posts; ``ValueError`` if it is not one."""
    try:
        event = json.loads(body) if isinstance(body, bytes) else body
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"body is not JSON: {exc}") from exc
    if not isinstance(event, dict) or "id" not in event or "type" not in event:
        raise ValueError("missing the CloudEvent id or type")
    data = event.get("data")
    if isinstance(data, str):  # data sent with a non-JSON content type arrives as a string
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise ValueError(f"data is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError("data is not a JSON object")
    topic = str(event.get("topic") or default_topic)
    return Delivery(id=str(event["id"]), type=str(event["type"]), topic=topic, data=data, raw=event)
