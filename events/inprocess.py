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
from dataclasses import asdict, dataclass
from typing import Any, Final

from fastapi import FastAPI
from fastapi.responses import JSONResponse

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

    async def replay(self, topic: str) -> list[DeadLetter]:
        """Deliver the dead letters of ``topic`` again (consumers skip what they applied)."""
        chosen = [d for d in self.dead_letters if d.topic == f"{topic}-dlq" or d.topic == topic]
        for letter in chosen:
            self.dead_letters.remove(letter)
        distinct = {str(letter.event.get("id")): letter.event for letter in chosen}
        for event in distinct.values():  # once per event: every consumer of the topic gets it
            await self.publish(topic, [event], partition_key="")
        return chosen

    def _dead_letter(self, subscription: Subscription, delivery: Delivery, reason: str) -> None:
        topic = subscription.dead_letter_topic or f"{subscription.topic}-dlq"
        log.warning("event %s on %s went to %s: %s", delivery.id, subscription.topic, topic, reason)
        self.dead_letters.append(DeadLetter(topic, subscription.consumer, delivery.raw, reason))


def install_routes(app: FastAPI, container: Any) -> None:
    """``GET /events/dead-letters`` and ``POST /events/dead-letters/replay`` for ``todo-agent
    events dlq`` (embedded default without sign-in only: dead letters hold every user's data)."""
    bus = bus_of(container)

    def refuse() -> JSONResponse | None:
        if container.verifier is None:
            return None
        return JSONResponse(
            {"detail": "Dead letters are only served by the embedded default without sign-in."}, 403
        )

    @app.get("/events/dead-letters", include_in_schema=False)
    async def list_dead_letters(topic: str = "task-events") -> Any:
        letters = [asdict(d) for d in bus.dead_letters if d.topic == f"{topic}-dlq"]
        return refuse() or {"dead_letters": letters, "count": len(letters), "what": f"on {topic}-dlq"}

    @app.post("/events/dead-letters/replay", include_in_schema=False)
    async def replay_dead_letters(topic: str = "task-events") -> Any:
        if (refused := refuse()) is not None:
            return refused
        letters = [asdict(d) for d in await bus.replay(topic)]
        return {"dead_letters": letters, "count": len(letters), "what": f"replayed to {topic}"}


def bus_of(container: Any) -> InProcessBus:
    """The container's bus, created on first use."""
    bus: InProcessBus = container.extras.setdefault("bus", InProcessBus())
    return bus
