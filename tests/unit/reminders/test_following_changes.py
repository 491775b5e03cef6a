"""An api process schedules the reminder jobs of tasks another process changed, from their
``task-updates`` events: once per reminder, never over a newer change, deleting only its own jobs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from events.reminders.scheduling import ReminderScheduling, job_name, plan_from_event, plan_from_row
from tasks.clock import utc_now
from tasks.inputs import TaskChanges, TaskDraft
from tasks.models import OutboxEvent
from tasks.service import Actor
from todo_agent.bootstrap import Container, bootstrap
from todo_agent.settings import Settings


class RecordedJobs:
    """A JobScheduler that remembers what it was asked to do."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, datetime | None]] = []

    async def schedule(self, name: str, *, due: datetime, data: Mapping[str, Any]) -> None:
        self.calls.append(("schedule", name, due))

    async def cancel(self, name: str) -> None:
        self.calls.append(("cancel", name, None))

    async def aclose(self) -> None:
        """Nothing to close."""


def last_event(container: Container, task_id: int) -> tuple[str, dict[str, Any]]:
    """The newest ``todo.task.*`` outbox row of the task, as a ``task-updates`` event (type, data)."""
    with Session(container.engine) as session:
        row = session.exec(
            select(OutboxEvent)
            .where(OutboxEvent.task_id == task_id, col(OutboxEvent.event_type).startswith("todo.task."))
            .order_by(col(OutboxEvent.id).desc())
        ).first()
    assert row is not None
    return row.event_type, row.payload


async def test_a_reminder_committed_elsewhere_gets_its_job_once_and_its_deletion_is_followed(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    elsewhere = bootstrap("recurrence", settings)  # commits without scheduling anything
    api = bootstrap("api", settings, run_migrations=False)
    jobs = RecordedJobs()
    scheduling = ReminderScheduling(jobs, api.uow)
    await scheduling.start()
    alice = Actor("alice", "Europe/Berlin")
    try:
        due = utc_now() + timedelta(hours=2)
        task = elsewhere.tasks.add(alice, TaskDraft(title="Call mom", due=due, remind_before_minutes=30))
        assert task.remind_at is not None
        created = last_event(elsewhere, task.id)
        plan = plan_from_event(*created)
        assert plan is not None and plan.verify and plan.remind_at == task.remind_at
        assert scheduling.follow(plan)
        await scheduling.drain()
        assert jobs.calls == [("schedule", job_name(task.id), task.remind_at)]
        assert not scheduling.follow(plan), "the same reminder again is already our job"

        elsewhere.tasks.complete(alice, task.id)
        completed = plan_from_event(*last_event(elsewhere, task.id))
        assert completed is not None and completed.remind_at is None and not completed.must_cancel
        assert scheduling.follow(completed)
        await scheduling.drain()
        assert jobs.calls[-1] == ("cancel", job_name(task.id), None)
        assert not scheduling.follow(completed), "no job of ours is left to delete"
    finally:
        await scheduling.stop()


async def test_a_late_event_never_overwrites_a_newer_change(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    elsewhere = bootstrap("recurrence", settings)
    api = bootstrap("api", settings, run_migrations=False)
    jobs = RecordedJobs()
    scheduling = ReminderScheduling(jobs, api.uow)
    await scheduling.start()
    alice = Actor("alice", "Europe/Berlin")
    try:
        due = utc_now() + timedelta(hours=2)
        task = elsewhere.tasks.add(alice, TaskDraft(title="Water plants", due=due, remind_before_minutes=30))
        first = plan_from_event(*last_event(elsewhere, task.id))
        elsewhere.tasks.update(alice, task.id, TaskChanges(remind_before_minutes=10))
        newer = plan_from_event(*last_event(elsewhere, task.id))
        assert first is not None and newer is not None
        scheduling.follow(first)
        scheduling.follow(newer)
        await scheduling.drain()
        assert jobs.calls == [("schedule", job_name(task.id), due - timedelta(minutes=10))]
    finally:
        await scheduling.stop()


def test_only_task_changes_make_plans() -> None:
    notification = {"user_id": "alice", "task_id": 7, "title": "Call mom", "notification_id": 1}
    assert plan_from_event("todo.notification.created.v1", notification) is None
    assert plan_from_event("todo.task.created.v1", {"task_id": "7", "user_id": "alice"}) is None


def last_row(container: Container, task_id: int) -> OutboxEvent:
    with Session(container.engine) as session:
        row = session.exec(
            select(OutboxEvent).where(OutboxEvent.task_id == task_id).order_by(col(OutboxEvent.id).desc())
        ).first()
    assert row is not None
    return row


async def test_completing_or_deleting_deletes_a_job_only_for_a_task_that_had_a_reminder(
    make_settings: Callable[..., Settings],
) -> None:
    """A task's job exists only if it had a reminder: the others cost no call to the scheduler."""
    app = bootstrap("recurrence", make_settings())
    jobs = RecordedJobs()
    scheduling = ReminderScheduling(jobs, app.uow)
    await scheduling.start()
    alice = Actor("alice", "Europe/Berlin")
    due = utc_now() + timedelta(hours=2)
    try:
        plain = [app.tasks.add(alice, TaskDraft(title=f"Plain {n}", due=due)) for n in range(2)]
        reminded = [
            app.tasks.add(alice, TaskDraft(title=f"Reminded {n}", due=due, remind_before_minutes=30))
            for n in range(2)
        ]
        for first, second in (plain, reminded):
            app.tasks.complete(alice, first.id)
            app.tasks.delete(alice, second.id)
        plans = [plan_from_row(last_row(app, task.id)) for task in (*plain, *reminded)]
        assert all(plan is not None and plan.remind_at is None for plan in plans)
        scheduling.submit([plan for plan in plans if plan is not None])
        await scheduling.drain()
        assert sorted(jobs.calls) == sorted(("cancel", job_name(task.id), None) for task in reminded)
    finally:
        await scheduling.stop()
