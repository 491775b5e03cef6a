"""A backlog in the outbox (a broker outage) does not starve new writes, and keeps every user's
order: on SQLite and PostgreSQL, a round whose batch of oldest rows is full also publishes the
newest rows of users with nothing else pending, and nothing else."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from events.relay import OutboxRelay
from tasks.inputs import TaskDraft
from tasks.service import Actor, TaskService
from tasks.unit_of_work import UnitOfWorkFactory


class Bus:
    """Takes every publish at once and notes the order: (topic, event id, key)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, str]] = []

    async def publish_keyed(self, topic: str, items: Sequence[tuple[Mapping[str, Any], str]]) -> None:
        self.seen.extend((topic, int(event["id"]), key) for event, key in items)

    async def publish(self, topic: str, events: Sequence[Mapping[str, Any]], *, partition_key: str) -> None:
        await self.publish_keyed(topic, [(event, partition_key) for event in events])

    def ids_of(self, user: Actor, topic: str = "task-events") -> list[int]:
        return [event_id for t, event_id, key in self.seen if t == topic and key == user.user_id]


def actor(name: str) -> Actor:
    return Actor(f"{name}-{uuid.uuid4().hex[:8]}", "UTC")


async def publish_what_is_pending(uow: UnitOfWorkFactory) -> None:
    """Rows earlier tests left pending in the session's database go out first (to nowhere)."""
    relay = OutboxRelay(uow.engine, Bus())
    while await relay.run_once():
        pass


async def test_a_new_write_goes_out_in_the_next_round_beside_a_backlog_and_every_user_keeps_order(
    backend: tuple[TaskService, UnitOfWorkFactory],
) -> None:
    service, uow = backend
    await publish_what_is_pending(uow)
    ann, ben, cat, dan = actor("ann"), actor("ben"), actor("cat"), actor("dan")
    for n in range(60):  # the backlog: two users' writes, interleaved
        service.add(ann if n % 3 else ben, TaskDraft(title=f"backlog {n}"))
    service.add(cat, TaskDraft(title="cat's first"))  # no backlog: goes out in the first round
    service.add(ann, TaskDraft(title="ann's new write"))  # waits behind ann's own backlog
    service.add(dan, TaskDraft(title="dan's first"))
    service.add(cat, TaskDraft(title="cat's second"))
    bus = Bus()
    relay = OutboxRelay(uow.engine, bus, batch_size=10, fresh_size=5)

    assert await relay.run_once() == 10 + 3  # the ten oldest, then cat's two and dan's one
    assert len(bus.ids_of(cat)) == 2 and len(bus.ids_of(dan)) == 1
    assert len(bus.ids_of(ann)) + len(bus.ids_of(ben)) == 10
    while await relay.run_once():
        pass
    for user, count in ((ann, 41), (ben, 20), (cat, 2), (dan, 1)):
        for topic in ("task-events", "task-updates"):
            ids = bus.ids_of(user, topic)
            assert len(ids) == count and ids == sorted(ids), (user, topic, ids)  # each once, in order
    assert relay.metrics()["backlog"] == 0


async def test_without_a_backlog_a_round_is_one_claim_in_id_order(
    backend: tuple[TaskService, UnitOfWorkFactory],
) -> None:
    service, uow = backend
    await publish_what_is_pending(uow)
    ann, ben = actor("ann"), actor("ben")
    for n in range(6):
        service.add(ann if n % 2 else ben, TaskDraft(title=f"write {n}"))
    bus = Bus()
    assert await OutboxRelay(uow.engine, bus, batch_size=10, fresh_size=5).run_once() == 6
    topics = [event_id for topic, event_id, _ in bus.seen if topic == "task-events"]
    assert sorted(topics) == topics
