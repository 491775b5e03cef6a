"""Firing rules: a reminder fires once, never early, never for a task that is done, deleted or moved."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session, select

from events.reminders.firing import Fired, decode_job_body, fire_reminder
from tasks.inputs import TaskChanges, TaskDraft
from tasks.models import OutboxEvent, ProcessedEvent, Task
from tasks.service import Actor, TaskService
from tasks.unit_of_work import UnitOfWorkFactory
from tests.conftest import FixedClock

GRACE = timedelta(minutes=60)


def reminder_rows(uow: UnitOfWorkFactory) -> list[OutboxEvent]:
    with Session(uow.engine) as session:
        return list(session.exec(select(OutboxEvent).where(OutboxEvent.topic == "reminders")))


def state_of(uow: UnitOfWorkFactory, task_id: int) -> str | None:
    with Session(uow.engine) as session:
        task = session.get(Task, task_id)
        assert task is not None
        return task.reminder_state


def add_with_reminder(service: TaskService, actor: Actor) -> tuple[int, datetime]:
    view = service.add(actor, TaskDraft(title="Call mom", due="tomorrow 20:00", remind_before_minutes=30))
    assert view.remind_at is not None
    return view.id, view.remind_at


def test_a_due_reminder_fires_once_however_often_the_job_is_delivered(
    sqlite_service: tuple[TaskService, UnitOfWorkFactory], berlin: Actor, clock: FixedClock
) -> None:
    service, uow = sqlite_service
    task_id, remind_at = add_with_reminder(service, berlin)
    at = remind_at + timedelta(milliseconds=300)

    results = [
        fire_reminder(uow, task_id=task_id, remind_at=remind_at, now=at, grace=GRACE) for _ in range(3)
    ]

    assert results == [Fired.SENT, Fired.ALREADY_SENT, Fired.ALREADY_SENT]
    [row] = reminder_rows(uow)
    assert row.event_type == "todo.reminder.due.v1"
    assert row.payload["task_id"] == task_id and row.payload["title"] == "Call mom"
    assert row.payload["user_id"] == "alice" and row.payload["notification_type"] == "reminder"
    assert state_of(uow, task_id) == "sent"
    with Session(uow.engine) as session:
        assert len(session.exec(select(ProcessedEvent)).all()) == 1
    assert service.get(berlin, task_id).remind_at is None  # no longer shown as pending


def test_a_job_delivered_before_the_reminder_time_sends_nothing_and_asks_again(
    sqlite_service: tuple[TaskService, UnitOfWorkFactory], berlin: Actor
) -> None:
    service, uow = sqlite_service
    task_id, remind_at = add_with_reminder(service, berlin)
    early = remind_at - timedelta(milliseconds=1)

    assert fire_reminder(uow, task_id=task_id, remind_at=remind_at, now=early, grace=GRACE) is Fired.NOT_YET
    assert reminder_rows(uow) == []
    assert state_of(uow, task_id) == "pending"


def test_completed_or_deleted_tasks_never_fire(
    sqlite_service: tuple[TaskService, UnitOfWorkFactory], berlin: Actor
) -> None:
    service, uow = sqlite_service
    done_id, remind_at = add_with_reminder(service, berlin)
    gone_id, _ = add_with_reminder(service, berlin)
    service.complete(berlin, done_id)
    service.delete(berlin, gone_id)
    at = remind_at + timedelta(seconds=1)

    assert fire_reminder(uow, task_id=done_id, remind_at=remind_at, now=at, grace=GRACE) is Fired.STALE
    assert fire_reminder(uow, task_id=gone_id, remind_at=remind_at, now=at, grace=GRACE) is Fired.STALE
    assert reminder_rows(uow) == []


def test_a_job_for_a_reminder_that_moved_is_stale(
    sqlite_service: tuple[TaskService, UnitOfWorkFactory], berlin: Actor
) -> None:
    service, uow = sqlite_service
    task_id, old = add_with_reminder(service, berlin)
    moved = service.update(berlin, task_id, TaskChanges(due="tomorrow 21:00"))
    assert moved.remind_at == old + timedelta(hours=1)
    assert moved.remind_at is not None

    at_old = old + timedelta(seconds=1)
    assert fire_reminder(uow, task_id=task_id, remind_at=old, now=at_old, grace=GRACE) is Fired.STALE
    at_new = moved.remind_at + timedelta(seconds=1)
    assert (
        fire_reminder(uow, task_id=task_id, remind_at=moved.remind_at, now=at_new, grace=GRACE) is Fired.SENT
    )
    [row] = reminder_rows(uow)
    assert datetime.fromisoformat(row.payload["remind_at"]) == moved.remind_at


def test_a_reminder_more_than_the_grace_period_late_is_marked_missed(
    sqlite_service: tuple[TaskService, UnitOfWorkFactory], berlin: Actor
) -> None:
    service, uow = sqlite_service
    task_id, remind_at = add_with_reminder(service, berlin)
    late = remind_at + GRACE + timedelta(seconds=1)

    assert fire_reminder(uow, task_id=task_id, remind_at=remind_at, now=late, grace=GRACE) is Fired.MISSED
    assert reminder_rows(uow) == []
    assert state_of(uow, task_id) == "missed"


def test_job_bodies_are_read_raw_or_as_a_protobuf_any() -> None:
    assert decode_job_body(b'{"task_id": 7, "remind_at": "2026-11-27T18:30:00+00:00"}')["task_id"] == 7
    wrapped = b'{"type_url": "type.googleapis.com/google.protobuf.Value", "value": "eyJ0YXNrX2lkIjogN30="}'
    assert decode_job_body(wrapped) == {"task_id": 7}
    assert decode_job_body(b"") == {}
    assert decode_job_body(b"not json") == {}
