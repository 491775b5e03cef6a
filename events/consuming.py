"""What every task-events consumer does around its effect: read the event, apply it once in a
worker thread, and turn the outcome into SUCCESS / RETRY / DROP with a log line saying why.

    event = read_task_event("audit", delivery)          # None: unreadable, answer DROP
    return await apply_in_thread("audit", delivery.id, lambda: record(delivery.id, event))
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Final

from opentelemetry.trace import SpanKind
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, IntegrityError

from events.contracts import ListEvent, TaskEvent, is_list_event
from events.ports import Delivery, Outcome, Subscription
from observability import tracing
from observability.metrics import CONSUMER_EVENTS, CONSUMER_LAG, DEAD_LETTERS
from tasks.clock import as_utc, utc_now

log = logging.getLogger(__name__)

#: The longest one effect may take before its delivery is answered RETRY. Every effect is bounded
#: by its own code (repeat rules are stepped within a horizon); this is the backstop that keeps a
#: consumer answering, so a poison event reaches its dead-letter topic after bounded attempts.
APPLY_BUDGET_SECONDS: Final = 30.0


async def handle_observed(subscription: Subscription, delivery: Delivery) -> Outcome:
    """Run the subscription's handler on ``delivery`` as a CONSUMER span in the writer's trace
    (the CloudEvent's ``traceparent``), and count its outcome and lag (``observability.metrics``).
    An exception propagates, after being recorded on the span."""
    consumer, topic = subscription.consumer, delivery.topic
    parent = tracing.context_from(delivery.raw.get("traceparent"))
    attributes = {"messaging.system": "dapr", "messaging.destination.name": topic,
                  "messaging.message.id": delivery.id, "todo.consumer": consumer}  # fmt: skip
    with tracing.span(f"{consumer} apply", kind=SpanKind.CONSUMER, context=parent, attributes=attributes):
        outcome = await subscription.handler(delivery)
        tracing.set_attribute("todo.outcome", outcome.value)
    CONSUMER_EVENTS.labels(consumer=consumer, topic=topic, outcome=outcome.value).inc()
    if outcome == Outcome.DROP:
        DEAD_LETTERS.labels(consumer=consumer, topic=topic).inc()
    elif outcome == Outcome.SUCCESS and (written := _event_time(delivery)) is not None:
        CONSUMER_LAG.labels(consumer=consumer, topic=topic).observe((utc_now() - written).total_seconds())
    return outcome


def _event_time(delivery: Delivery) -> datetime | None:
    raw = delivery.raw.get("time")
    try:
        return as_utc(datetime.fromisoformat(raw)) if isinstance(raw, str) else None
    except ValueError:
        return None


def read_task_event(consumer: str, delivery: Delivery) -> TaskEvent | ListEvent | None:
    """The task (or list) event delivered; None when it is neither (answer DROP)."""
    try:
        if is_list_event(delivery.type):
            return ListEvent.model_validate(delivery.data)
        return TaskEvent.model_validate(delivery.data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
        log.warning("DROP %s event %s: not a task event (%s)", consumer, delivery.id, problems)
        return None


async def apply_in_thread(
    consumer: str, event_id: str, effect: Callable[[], object], *, budget: float = APPLY_BUDGET_SECONDS
) -> Outcome:
    """Run the effect (which records ``event_id`` in its own transaction) off the event loop."""
    try:
        async with asyncio.timeout(budget):
            await asyncio.to_thread(effect)
    except TimeoutError:
        log.warning("RETRY %s event %s: its effect took longer than %.0f s", consumer, event_id, budget)
        return Outcome.RETRY
    except IntegrityError:
        log.info("RETRY %s event %s: another consumer applied it at the same time", consumer, event_id)
        return Outcome.RETRY
    except DBAPIError as exc:
        log.warning("RETRY %s event %s: database unavailable (%s)", consumer, event_id, exc.orig)
        return Outcome.RETRY
    return Outcome.SUCCESS
