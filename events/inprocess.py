"""The in-process bus of the embedded default: the same CloudEvents, the same handlers, no Dapr.

    bus = bus_of(container)                  # one per container (``container.extras["bus"]``)
    bus.subscribe(subscription)              # what ``events.subscriber.mount`` does
    await bus.publish("task-events", [cloud_event], partition_key="alice")

``publish`` returns once every subscriber of the topic has taken each event (SUCCESS or DROP),
so the relay marks an outbox row sent only after its effects are committed. A handler that
keeps answering RETRY (or raising) makes ``publish`` raise ``PublishError``: the relay keeps
the row and tries again later, and consumers ignore the repeats they have already applied.
Dropped events are kept in ``bus.dead_letters`` (the embedded dead-letter "topic").
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from events.ports import Delivery, Outcome, PublishError, Subscription

log = logging.getLogger(__name__)

_RETRY_DELAYS: Final = (0.05, 0.2, 0.5)
_DEAD_LETTER_LIMIT: Final = 1000


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    consumer: str
    event: Mapping[str, Any]
    reason: str


class InProcessBus:
    def __init__(self) -> None:
        self._subscriptions: dict[str, list[Subscription]] = defaultdict(list)
        self.dead_letters: deque[DeadLetter] = deque(maxlen=_DEAD_LETTER_LIMIT)

    def subscribe(self, subscription: Subscription) -> None:
        self._subscriptions[subscription.topic].append(subscription)

    def subscriptions(self, topic: str) -> list[Subscription]:
        return list(self._subscriptions.get(topic, ()))

    async def publish(self, topic: str, events: Sequence[Mapping[str, Any]], *, partition_key: str) -> None:
        for event in events:
            delivery = Delivery(
                id=str(event["id"]), type=str(event["type"]), topic=topic,
                data=dict(event.get("data") or {}), raw=event,
            )  # fmt: skip
            for subscription in self.subscriptions(topic):
                await self._deliver(subscription, delivery)

    async def _deliver(self, subscription: Subscription, delivery: Delivery) -> None:
        for delay in (*_RETRY_DELAYS, None):
            try:
                outcome = await subscription.handler(delivery)
            except Exception:
                log.exception("%s failed on event %s; will retry", subscription.consumer, delivery.id)
                outcome = Outcome.RETRY
            if outcome == Outcome.SUCCESS:
                return
            if outcome == Outcome.DROP:
                self._dead_letter(subscription, delivery, "dropped by the consumer")
                return
            if delay is not None:
                await asyncio.sleep(delay)
        raise PublishError(f"{subscription.consumer} asked to retry event {delivery.id}")

    def _dead_letter(self, subscription: Subscription, delivery: Delivery, reason: str) -> None:
        topic = subscription.dead_letter_topic or f"{subscription.topic}-dlq"
        log.warning("event %s on %s went to %s: %s", delivery.id, subscription.topic, topic, reason)
        self.dead_letters.append(DeadLetter(topic, subscription.consumer, delivery.raw, reason))


def bus_of(container: Any) -> InProcessBus:
    """The container's bus, created on first use."""
    bus: InProcessBus = container.extras.setdefault("bus", InProcessBus())
    return bus
