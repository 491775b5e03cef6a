"""Job callbacks fire in batches (group commit) with the same once-only rules, on both databases.

A burst of callbacks costs a few transactions instead of one each; a batch decides every request
by the task's current state, a task named twice fires once, and two replicas firing the same
reminders at once (PostgreSQL row locks) still send each reminder once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlmodel import Session, select

from events.reminders.firing import Fired, FireRequest, GroupFiring, fire_reminders
from tasks.clock import utc_now
from tasks.inputs import TaskDraft
from tasks.models import OutboxEvent, Task
from tasks.service import Actor, TaskService
from tasks.unit_of_work import UnitOfWorkFactory
from tests.conftest import FixedClock, service_on

pytestmark = pytest.mark.integration

GRACE = timedelta(minutes=60)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(
    request: pytest.FixtureRequest, sqlite_url: str
) -> Iterator[tuple[TaskService, UnitOfWorkFactory]]:
    """Tasks written ten minutes in the past, so reminders '5 minutes from now' are due now."""
    url = sqlite_url if request.param == "sqlite" else request.getfixturevalue("pg_url")
    yield from service_on(url, FixedClock(utc_now() - timedelta(minutes=10)))


@pytest.fixture
def actor(request: pytest.FixtureRequest) -> Actor:
    return Actor(user_id=f"firing-{request.node.name[-40:]}-{id(request)}", timezone="UTC")


def due_reminder(service: TaskService, actor: Actor, title: str) -> tuple[int, datetime]:
    """A task whose reminder came due five minutes ago (in real time)."""
    view = service.add(actor, TaskDraft(title=title, due="in 2 hours", remind_at="in 5 minutes"))
    assert view.remind_at is not None and view.remind_at < utc_now()
    return view.id, view.remind_at


def reminder_events(uow: UnitOfWorkFactory, user_id: str) -> list[OutboxEvent]:
    with Session(uow.engine) as session:
        statement = select(OutboxEvent).where(
            OutboxEvent.topic == "reminders", OutboxEvent.user_id == user_id
        )
        return list(session.exec(statement))


def state_of(uow: UnitOfWorkFactory, task_id: int) -> str | None:
    with Session(uow.engine) as session:
        task = session.get(Task, task_id)
        assert task is not None
        return task.reminder_state


def test_one_batch_decides_each_request_by_its_tasks_current_state(
    backend: tuple[TaskService, UnitOfWorkFactory], actor: Actor
) -> None:
    service, uow = backend
    due_id, due_at = due_reminder(service, actor, "Call mom")
    done_id, done_at = due_reminder(service, actor, "Done already")
    service.complete(actor, done_id)
    moved_id, old_at = due_reminder(service, actor, "Moved")
    moved = service.set_reminder(actor, moved_id, at="in 20 minutes")  # 10 minutes from now
    late_id, late_at = due_reminder(service, actor, "Late")
    requests = [
        FireRequest(due_id, due_at),
        FireRequest(due_id, due_at),  # the same job delivered twice in one batch
        FireRequest(done_id, done_at),
        FireRequest(moved_id, old_at),  # the job of the reminder before the move
        FireRequest(moved_id, moved.remind_at),  # the new reminder's job, delivered early
        FireRequest(late_id, late_at),
        FireRequest(999_999_999, due_at),  # deleted long ago
    ]

    results = fire_reminders(uow, requests, grace=GRACE)
    late = fire_reminders(uow, [FireRequest(late_id, late_at)], grace=timedelta(minutes=1))

    assert results == [Fired.SENT, Fired.ALREADY_SENT, Fired.STALE, Fired.STALE, Fired.NOT_YET,
                       Fired.SENT, Fired.STALE]  # fmt: skip
    assert late == [Fired.ALREADY_SENT]
    sent = reminder_events(uow, actor.user_id)
    assert sorted(row.payload["task_id"] for row in sent) == sorted([due_id, late_id])
    states = [state_of(uow, i) for i in (due_id, done_id, moved_id, late_id)]
    assert states == ["sent", "cancelled", "pending", "sent"]  # completing cancelled the reminder
    assert fire_reminders(uow, requests[:2], grace=GRACE) == [Fired.ALREADY_SENT, Fired.ALREADY_SENT]


def test_a_reminder_past_the_grace_period_is_marked_missed_in_a_batch(
    backend: tuple[TaskService, UnitOfWorkFactory], actor: Actor
) -> None:
    service, uow = backend
    on_time, on_time_at = due_reminder(service, actor, "On time")
    missed, missed_at = due_reminder(service, actor, "Missed")

    results = fire_reminders(
        uow, [FireRequest(on_time, on_time_at), FireRequest(missed, missed_at)], grace=GRACE,
        now=missed_at + GRACE + timedelta(seconds=1),
    )  # fmt: skip

    assert results == [Fired.MISSED, Fired.MISSED]
    assert reminder_events(uow, actor.user_id) == []
    assert state_of(uow, missed) == "missed"


async def test_a_burst_of_callbacks_is_fired_in_few_transactions_each_reminder_once(
    backend: tuple[TaskService, UnitOfWorkFactory], actor: Actor
) -> None:
    service, uow = backend
    reminders = [due_reminder(service, actor, f"Burst {n}") for n in range(40)]
    firing = GroupFiring(uow, grace=GRACE)

    results = await asyncio.gather(
        *(firing.fire(FireRequest(task_id, at)) for task_id, at in reminders * 2)  # every job twice
    )

    # each reminder once: which of its two deliveries wins depends on which batch locks it first
    assert all({first, second} == {Fired.SENT, Fired.ALREADY_SENT}
               for first, second in zip(results[:40], results[40:], strict=True))  # fmt: skip
    assert len(reminder_events(uow, actor.user_id)) == 40
    assert 1 < firing.batches < 20, f"80 callbacks took {firing.batches} transactions"


async def test_two_replicas_firing_the_same_reminders_send_each_once(
    backend: tuple[TaskService, UnitOfWorkFactory], actor: Actor
) -> None:
    service, uow = backend
    reminders = [due_reminder(service, actor, f"Twice delivered {n}") for n in range(30)]
    one, two = GroupFiring(uow, grace=GRACE), GroupFiring(uow, grace=GRACE)

    results = await asyncio.gather(
        *(replica.fire(FireRequest(task_id, at)) for task_id, at in reminders for replica in (one, two))
    )

    assert sorted(results).count(Fired.SENT) == 30
    assert set(results) == {Fired.SENT, Fired.ALREADY_SENT}
    events = reminder_events(uow, actor.user_id)
    assert sorted(row.payload["task_id"] for row in events) == sorted(task_id for task_id, _ in reminders)
