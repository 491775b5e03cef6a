"""Several relays on one PostgreSQL database take turns: rows reach the bus in id order, once.

Every role and replica runs a relay. If two of them published overlapping rounds (each claiming
its own rows with SKIP LOCKED), a later round could reach Kafka before an earlier one, and one
user's ``updated`` could overtake its ``created``. Here three relays run at once over rows written
one after another (so id order is commit order) into a bus that takes a random 0-4 ms per
request, like a sidecar and broker would; the bus must see every event once, in id order.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from events.relay import OutboxRelay
from tasks.db import make_engine, migrate
from tasks.inputs import TaskDraft
from tasks.service import Actor, TaskService
from tasks.unit_of_work import UnitOfWorkFactory

pytestmark = pytest.mark.integration

WRITES = 300


class SlowBus:
    """Receives publishes the way the relays send them and notes the order they complete in."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []  # (topic, event id, key), in the order accepted

    async def publish_keyed(self, topic: str, items: Sequence[tuple[Mapping[str, Any], str]]) -> None:
        await asyncio.sleep(random.uniform(0, 0.004))
        self.seen.extend((topic, str(event["id"]), key) for event, key in items)

    async def publish(self, topic: str, events: Sequence[Mapping[str, Any]], *, partition_key: str) -> None:
        await self.publish_keyed(topic, [(event, partition_key) for event in events])


async def test_relays_take_turns_so_every_event_reaches_the_bus_once_and_in_order(pg_url: str) -> None:
    engine = make_engine(pg_url)
    migrate(engine)
    uow = UnitOfWorkFactory(engine)
    service = TaskService(uow)
    user = Actor(user_id=f"turns-{random.randrange(10**9)}", timezone="UTC")
    bus = SlowBus()
    relays = [OutboxRelay(engine, bus, batch_size=7) for _ in range(3)]  # small rounds: many turns
    try:
        async with relays[0].running(uow), relays[1].running(uow), relays[2].running(uow):
            for n in range(WRITES):
                await asyncio.to_thread(service.add, user, TaskDraft(title=f"in order {n}"))
            for _ in range(500):
                if sum(1 for _, _, key in bus.seen if key == user.user_id) >= 2 * WRITES:
                    break
                await asyncio.sleep(0.02)
    finally:
        engine.dispose()

    assert sum(1 for relay in relays if relay.published) >= 2, "the relays should have shared the work"
    for topic in ("task-events", "task-updates"):
        ids = [int(event_id) for t, event_id, key in bus.seen if t == topic and key == user.user_id]
        assert len(ids) == len(set(ids)) == WRITES, f"{topic}: an event published twice or missing"
        overtaken = [(a, b) for a, b in zip(ids, ids[1:], strict=False) if b < a]
        assert overtaken == [], f"{topic}: events out of id order, e.g. {overtaken[:5]}"
