"""The in-process bus of the embedded default: the same CloudEvents, the same handlers, no Dapr.

    bus = InProcessBus()                     # one per process (``Container.bus``)
    bus.subscribe(subscription)              # what ``todo_agent.api`` does for each consumer
    await bus.publish("task-events", [cloud_event], partition_key="alice")

``publish`` returns once every subscriber of the topic has taken each event (SUCCESS or DROP),
so the relay marks an outbox row sent only after its effects are committed. A handler that
answers RETRY (or raises) is tried again at once with a short back-off; if it still does,
``publish`` raises ``PublishError``: the relay keeps the row and tries again later (backing
off), and consumers ignore the repeats they have already applied. Retries are bounded: after
``max_attempts`` deliveries of one event to one consumer, counted across those rounds, the bus
gives up on that consumer, logs why and dead-letters the event, so a poison event cannot
hold back the ones after it. Dropped and given-up events are kept in ``bus.dead_letters``
(the embedded dead-letter "topic", served at ``/events/dead-letters`` and replayable), and so
are events published to a dead-letter topic (``<topic>-dlq``, such as a reminder delivery given
up: ``events.reminders.dead_letters``; its ``data["dead_letter"]`` names consumer and reason).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict, deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from events.contracts import DEAD_LETTER_SUFFIX, dead_letter_key
from events.ports import Delivery, Outcome, PublishError, Subscription

log = logging.getLogger(__name__)

RETRY_DELAYS: Final = (0.05, 0.2, 0.5)
#: Deliveries of one event to one consumer before it is dead-lettered: 3 rounds of the relay.
MAX_ATTEMPTS: Final = 3 * (len(RETRY_DELAYS) + 1)
_DEAD_LETTER_LIMIT: Final = 1000


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    consumer: str
    event: Mapping[str, Any]
    reason: str
    attempts: int = 1


class InProcessBus:
    def __init__(
        self, *, retry_delays: Sequence[float] = RETRY_DELAYS, max_attempts: int = MAX_ATTEMPTS
    ) -> None:
        self._subscriptions: dict[str, list[Subscription]] = defaultdict(list)
        self.dead_letters: deque[DeadLetter] = deque(maxlen=_DEAD_LETTER_LIMIT)
        self._retry_delays = tuple(retry_delays)
        self._max_attempts = max_attempts
        self._attempts: dict[tuple[str, str], int] = {}  # (consumer, event id) -> deliveries

    def subscribe(self, subscription: Subscription) -> None:
        self._subscriptions[subscription.topic].append(subscription)

    def subscriptions(self, topic: str) -> list[Subscription]:
        return list(self._subscriptions.get(topic, ()))

    async def publish(self, topic: str, events: Sequence[Mapping[str, Any]], *, partition_key: str) -> None:
        if topic.endswith(DEAD_LETTER_SUFFIX) and not self._subscriptions.get(topic):
            for event in events:
                self._keep(topic, event)
            return
        for event in events:
            delivery = Delivery(
                id=str(event["id"]), type=str(event["type"]), topic=topic,
                data=dict(event.get("data") or {}), raw=event,
            )  # fmt: skip
            for subscription in self.subscriptions(topic):
                await self._deliver(subscription, delivery)

    async def _deliver(self, subscription: Subscription, delivery: Delivery) -> None:
        key = (subscription.consumer, delivery.id)
        why = "the consumer asked to retry"
        for delay in (*self._retry_delays, None):
            attempts = self._attempts[key] = self._attempts.get(key, 0) + 1
            try:
                outcome = await subscription.handler(delivery)
            except Exception as exc:
                log.exception("%s failed on event %s; will retry", subscription.consumer, delivery.id)
                outcome, why = Outcome.RETRY, f"the consumer raised {type(exc).__name__}: {exc}"
            if outcome == Outcome.SUCCESS:
                self._attempts.pop(key, None)
                return
            if outcome == Outcome.DROP:
                self._attempts.pop(key, None)
                self._dead_letter(subscription, delivery, "dropped by the consumer", attempts)
                return
            if attempts >= self._max_attempts:
                self._attempts.pop(key, None)
                self._dead_letter(
                    subscription, delivery, f"gave up after {attempts} attempts: {why}", attempts
                )
                return
            if delay is not None:
                await asyncio.sleep(delay)
        raise PublishError(f"{subscription.consumer} asked to retry event {delivery.id} ({why})")

    async def replay(self, topic: str) -> list[DeadLetter]:
        """Deliver the dead letters of ``topic`` again (consumers skip what they applied)."""
        chosen = [d for d in self.dead_letters if d.topic == f"{topic}-dlq" or d.topic == topic]
        for letter in chosen:
            self.dead_letters.remove(letter)
        distinct = {dead_letter_key(letter.event): letter.event for letter in chosen}
        for event in distinct.values():  # once per event (and channel given up): every consumer gets it
            while True:  # bounded: a consumer that keeps asking to retry is dead-lettered again
                try:
                    await self.publish(topic, [event], partition_key="")
                    break
                except PublishError:
                    continue
        return chosen

    def _dead_letter(
        self, subscription: Subscription, delivery: Delivery, reason: str, attempts: int
    ) -> None:
        topic = subscription.dead_letter_topic or f"{subscription.topic}-dlq"
        log.warning("event %s on %s for %s went to %s: %s", delivery.id, subscription.topic,
                    subscription.consumer, topic, reason)  # fmt: skip
        self.dead_letters.append(DeadLetter(topic, subscription.consumer, delivery.raw, reason, attempts))

    def _keep(self, topic: str, event: Mapping[str, Any]) -> None:
        """An event published to a dead-letter topic: kept, with the reason it carries."""
        data = event.get("data")
        held = data.get("dead_letter") if isinstance(data, dict) else None
        held = held if isinstance(held, dict) else {}
        reason = (
            f"gave up {held['channel']}: {held.get('error')}" if "channel" in held else "published as one"
        )
        log.warning("event %s went to %s: %s", event.get("id"), topic, reason)
        letter = DeadLetter(topic, str(held.get("consumer", "")), event, reason, int(held.get("attempts", 1)))
        self.dead_letters.append(letter)


def dead_letter_router(bus: InProcessBus, *, sign_in_required: bool) -> APIRouter:
    """``GET /events/dead-letters`` and ``POST /events/dead-letters/replay`` for ``todo-agent
    events dlq`` (embedded default without sign-in only: dead letters hold every user's data)."""
    routes = APIRouter()

    def refuse() -> JSONResponse | None:
        if not sign_in_required:
            return None
        return JSONResponse(
            {"detail": "Dead letters are only served by the embedded default without sign-in."}, 403
        )

    @routes.get("/events/dead-letters", include_in_schema=False)
    async def list_dead_letters(topic: str = "task-events") -> Any:
        letters = [asdict(d) for d in bus.dead_letters if d.topic == f"{topic}-dlq"]
        return refuse() or {"dead_letters": letters, "count": len(letters), "what": f"on {topic}-dlq"}

    @routes.post("/events/dead-letters/replay", include_in_schema=False)
    async def replay_dead_letters(topic: str = "task-events") -> Any:
        if (refused := refuse()) is not None:
            return refused
        letters = [asdict(d) for d in await bus.replay(topic)]
        return {"dead_letters": letters, "count": len(letters), "what": f"replayed to {topic}"}

    return routes
