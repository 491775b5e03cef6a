"""A relay asked to stop finishes the round in progress: what it published is marked sent."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlmodel import Session, col, func, select

from events.ports import PublishError
from events.relay import OutboxRelay
from tasks.inputs import TaskDraft
from tasks.models import OutboxEvent
from tasks.service import Actor
from tests.unit.events.support import RecordingPublisher
from todo_agent.bootstrap import Container


class SlowPublisher(RecordingPublisher):
    """Records, then takes a while to answer (as Dapr does while Kafka acknowledges)."""

    def __init__(self) -> None:
        super().__init__()
        self.publishing = asyncio.Event()

    async def publish(self, topic: str, events: Sequence[Mapping[str, Any]], *, partition_key: str) -> None:
        await super().publish(topic, events, partition_key=partition_key)
        self.publishing.set()
        await asyncio.sleep(0.2)


def _pending(container: Container) -> int:
    with Session(container.engine) as session:
        pending = col(OutboxEvent.published_at).is_(None)
        return int(session.exec(select(func.count()).select_from(OutboxEvent).where(pending)).one())


async def test_a_relay_stopped_while_publishing_marks_what_it_published_and_returns(
    make_container: Callable[..., Container],
) -> None:
    container = make_container("api")
    container.tasks.add(Actor("alice"), TaskDraft(title="Buy milk"))
    publisher = SlowPublisher()
    relay = OutboxRelay(container.engine, publisher, inline_db=True)
    running = asyncio.create_task(relay.run())
    await asyncio.wait_for(publisher.publishing.wait(), 5)

    relay.stop()  # mid-publish
    await asyncio.wait_for(running, 5)  # returns by itself once the round is over

    assert publisher.ids("task-events") == ["1"] and _pending(container) == 0  # not published again


class DownSidecar(RecordingPublisher):
    async def publish(self, topic: str, events: Sequence[Mapping[str, Any]], *, partition_key: str) -> None:
        raise PublishError("the Dapr sidecar is unreachable")


async def test_a_relay_stopped_while_backing_off_returns_at_once(
    make_container: Callable[..., Container],
) -> None:
    container = make_container("api")
    container.tasks.add(Actor("alice"), TaskDraft(title="Buy milk"))
    relay = OutboxRelay(container.engine, DownSidecar(), max_backoff=60)
    running = asyncio.create_task(relay.run())
    while relay.failures < 3:  # noqa: ASYNC110 - a counter; backing off 0.2, 0.4, then 0.8 s
        await asyncio.sleep(0.05)
    relay.stop()
    await asyncio.wait_for(running, 0.5)
    assert _pending(container) == 1


async def test_a_relay_cancelled_as_it_is_woken_stops(make_container: Callable[..., Container]) -> None:
    """Cancelled in the same loop turn as a commit wakes it (an app shutting down right after a
    write), the relay's task ends: on Python 3.11 ``asyncio.wait_for`` returned normally then and
    the relay ran on, so the app's shutdown waited for it forever."""
    container = make_container("api")
    relay = OutboxRelay(container.engine, RecordingPublisher(), inline_db=True, poll_interval=30)
    running = asyncio.create_task(relay.run())
    for _ in range(20):  # into its wait for a wake-up (an empty outbox: one quick round)
        await asyncio.sleep(0.01)

    relay.wake()
    running.cancel()
    done, _ = await asyncio.wait({running}, timeout=5)
    assert done and running.cancelled(), "the relay ignored its cancellation"
