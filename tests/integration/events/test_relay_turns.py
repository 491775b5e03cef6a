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
from sqlalchemy import text

from events.relay import _RELAY_LOCK, OutboxRelay
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


async def test_a_relay_that_finds_another_in_its_round_publishes_right_after_it(pg_url: str) -> None:
    """Taking the turn and claiming are one statement: a turn that is not ours must still read as
    "try again in a moment", not as "nothing pending" (which would wait for the poll, 30 s here)."""
    engine = make_engine(pg_url)
    migrate(engine)
    uow = UnitOfWorkFactory(engine)
    user = Actor(user_id=f"next-{random.randrange(10**9)}", timezone="UTC")
    bus = SlowBus()
    relay = OutboxRelay(engine, bus, poll_interval=30)
    try:
        with engine.connect() as other_round:
            other_round.execute(
                text("SELECT pg_advisory_xact_lock(CAST(:key AS bigint))"), {"key": _RELAY_LOCK}
            )
            async with relay.running(uow):
                await asyncio.to_thread(TaskService(uow).add, user, TaskDraft(title="waits its turn"))
                await asyncio.sleep(0.3)
                assert [key for _, _, key in bus.seen if key == user.user_id] == [], "published out of turn"
                other_round.rollback()  # the other relay's round is over
                for _ in range(100):
                    if sum(1 for _, _, key in bus.seen if key == user.user_id) == 2:
                        break
                    await asyncio.sleep(0.01)
    finally:
        engine.dispose()
    assert sorted(topic for topic, _, key in bus.seen if key == user.user_id) == [
        "task-events",
        "task-updates",
    ]
