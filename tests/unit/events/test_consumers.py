"""Recurrence and audit consumers on SQLite: effects happen once per event, poison is dropped."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlmodel import Session, col, select

from events.audit import AuditLog
from events.contracts import cloud_event
from events.ports import Delivery, Outcome
from events.recurrence import NextOccurrence
from tasks.inputs import TaskChanges, TaskDraft
from tasks.models import AuditEntry, OutboxEvent, ProcessedEvent, Task
from tasks.service import Actor
from todo_agent.bootstrap import Container

ALICE = Actor("alice")


def _last_delivery(container: Container, topic: str = "task-events") -> Delivery:
    with Session(container.engine) as session:
        row = session.exec(select(OutboxEvent).order_by(col(OutboxEvent.id).desc())).first()
    assert row is not None
    event = cloud_event(row)
    return Delivery(id=event["id"], type=event["type"], topic=topic, data=event["data"], raw=event)


def _tasks(container: Container) -> list[Task]:
    with Session(container.engine) as session:
        return list(session.exec(select(Task).order_by(col(Task.id))).all())


def _poison(data: dict[str, Any]) -> Delivery:
    return Delivery(id="999", type="todo.task.completed.v1", topic="task-events", data=data)


async def test_completing_an_every_3_days_task_creates_the_next_one_once_even_when_redelivered(
    make_container: Callable[..., Container],
) -> None:
    container = make_container("recurrence")
    first = container.tasks.add(
        ALICE, TaskDraft(title="Water the plants", recurrence="every 3 days", due="2026-12-01T09:00Z",
                         description="balcony", priority="high", tags=["home"], remind_before_minutes=30),
    )  # fmt: skip
    container.tasks.complete(ALICE, first.id)
    completed = _last_delivery(container)
    consumer = NextOccurrence(container.uow, container.tasks)

    assert await consumer.handle(completed) == Outcome.SUCCESS
    assert await consumer.handle(completed) == Outcome.SUCCESS  # redelivery

    tasks = _tasks(container)
    assert len(tasks) == 2
    following = tasks[1]
    assert following.previous_occurrence_id == first.id
    assert following.due_at is not None and following.due_at.isoformat() == "2026-12-04T09:00:00+00:00"
    assert (following.title, following.description, following.priority) == (
        "Water the plants",
        "balcony",
        "high",
    )
    assert following.tags == ["home"] and following.remind_before_minutes == 30
    created = _last_delivery(container)
    assert created.type == "todo.task.created.v1" and created.data["task_id"] == following.id


async def test_completed_reopened_and_completed_again_still_gives_one_next_occurrence(
    make_container: Callable[..., Container],
) -> None:
    container = make_container("recurrence")
    task = container.tasks.add(ALICE, TaskDraft(title="Stretch", recurrence="daily", due="2026-12-01T07:00Z"))
    consumer = NextOccurrence(container.uow, container.tasks)
    container.tasks.complete(ALICE, task.id)
    first_completion = _last_delivery(container)
    container.tasks.reopen(ALICE, task.id)
    assert await consumer.handle(first_completion) == Outcome.SUCCESS  # reopened: nothing yet
    assert len(_tasks(container)) == 1
    container.tasks.complete(ALICE, task.id)
    second_completion = _last_delivery(container)

    assert await consumer.handle(second_completion) == Outcome.SUCCESS
    assert await consumer.handle(first_completion) == Outcome.SUCCESS
    assert len(_tasks(container)) == 2


async def test_a_rule_that_has_ended_creates_nothing(make_container: Callable[..., Container]) -> None:
    container = make_container("recurrence")
    task = container.tasks.add(
        ALICE, TaskDraft(title="Course", recurrence="FREQ=DAILY;COUNT=1", due="2026-12-01T07:00Z")
    )
    container.tasks.complete(ALICE, task.id)
    assert (
        await NextOccurrence(container.uow, container.tasks).handle(_last_delivery(container))
        == Outcome.SUCCESS
    )
    assert len(_tasks(container)) == 1


async def test_repeat_from_completion_counts_from_the_completion_day(
    make_container: Callable[..., Container],
) -> None:
    container = make_container("recurrence")
    task = container.tasks.add(
        ALICE, TaskDraft(title="Haircut", recurrence="every 3 days", repeat_from="completion",
                         due="2026-11-01T10:00Z"),
    )  # fmt: skip
    done = container.tasks.complete(ALICE, task.id)
    await NextOccurrence(container.uow, container.tasks).handle(_last_delivery(container))
    following = _tasks(container)[1]
    assert done.completed_at is not None and following.due_at is not None
    assert following.due_at.date() > done.completed_at.date()
    assert following.due_at.hour == 10


async def test_unreadable_events_are_dropped_by_both_consumers(
    make_container: Callable[..., Container],
) -> None:
    container = make_container("all")
    poison = _poison({"event_type": "completed", "user_id": "alice"})  # no task_id, no task_data
    assert await NextOccurrence(container.uow, container.tasks).handle(poison) == Outcome.DROP
    assert await AuditLog(container.uow).handle(poison) == Outcome.DROP


async def test_the_audit_log_keeps_one_entry_per_event_with_before_and_after(
    make_container: Callable[..., Container],
) -> None:
    container = make_container("audit")
    audit = AuditLog(container.uow)
    task = container.tasks.add(ALICE, TaskDraft(title="Draft"))
    created = _last_delivery(container)
    container.tasks.update(ALICE, task.id, TaskChanges(title="Final"))
    updated = _last_delivery(container)

    for delivery in (created, updated, updated, created):
        assert await audit.handle(delivery) == Outcome.SUCCESS

    with Session(container.engine) as session:
        entries = list(session.exec(select(AuditEntry).order_by(col(AuditEntry.id))).all())
        processed = session.exec(select(ProcessedEvent).where(ProcessedEvent.consumer == "audit")).all()
    assert [e.action for e in entries] == ["created", "updated"]
    assert entries[1].before == {"title": "Draft"} and entries[1].after == {"title": "Final"}
    assert entries[1].summary == f"Updated task {task.id} 'Final': title 'Draft' -> 'Final'"
    assert entries[0].user_id == "alice" and len(processed) == 2


async def test_a_completed_task_whose_saved_rule_cannot_be_stepped_ends_its_series_at_once(
    make_container: Callable[..., Container],
) -> None:
    """A rule saved before rules were checked (every 0 days) once spun the consumer forever."""
    container = make_container("recurrence")
    task = container.tasks.add(ALICE, TaskDraft(title="Spin", recurrence="daily", due="2026-12-01T07:00Z"))
    with Session(container.engine) as session:
        row = session.get(Task, task.id)
        assert row is not None
        row.recurrence = "FREQ=DAILY;INTERVAL=0"
        session.add(row)
        session.commit()
    container.tasks.complete(ALICE, task.id)
    consumer = NextOccurrence(container.uow, container.tasks)
    assert await consumer.handle(_last_delivery(container)) == Outcome.SUCCESS
    assert len(_tasks(container)) == 1


async def test_an_effect_that_outlives_its_budget_is_answered_retry_without_waiting_for_it() -> None:
    import asyncio
    import threading
    import time

    from events.consuming import apply_in_thread

    release = threading.Event()
    started = time.monotonic()
    outcome = await apply_in_thread("audit", "7", lambda: release.wait(10), budget=0.2)
    waited = time.monotonic() - started
    release.set()
    assert outcome == Outcome.RETRY
    assert waited < 5  # answered at the budget, not when the effect ended
    assert await apply_in_thread("audit", "8", lambda: None, budget=0.2) == Outcome.SUCCESS
    await asyncio.sleep(0)


async def test_list_events_are_audited_passed_by_recurrence_and_shown_to_clients(
    make_container: Callable[..., Container],
) -> None:
    from events.realtime import client_message

    container = make_container("all")
    container.tasks.create_list(ALICE, "Groceries")
    container.tasks.change_list(ALICE, "groceries", name="Shopping")
    renamed = _last_delivery(container)
    assert renamed.type == "todo.list.renamed.v1"
    assert await NextOccurrence(container.uow, container.tasks).handle(renamed) == Outcome.SUCCESS
    assert await AuditLog(container.uow).handle(renamed) == Outcome.SUCCESS
    with Session(container.engine) as session:
        entry = session.exec(select(AuditEntry).where(AuditEntry.event_id == renamed.id)).one()
    assert entry.action == "list_renamed" and "'Groceries' -> 'Shopping'" in entry.summary
    shown = client_message(renamed.id, renamed.type, renamed.data)
    assert shown is not None and shown["type"] == "list" and shown["list"]["name"] == "Shopping"


async def test_a_task_event_written_before_lists_and_batches_still_parses() -> None:
    from events.contracts import TaskEvent

    old = {
        "schema_version": 1, "user_id": "alice", "event_type": "completed", "task_id": 7,
        "task_data": {"id": 7, "title": "Old", "completed": True}, "changes": {"completed": [False, True]},
        "timestamp": "2026-11-01T10:00:00+00:00",
    }  # fmt: skip
    event = TaskEvent.model_validate(old)
    assert event.change_id is None and event.batch_size is None and event.task_data.list_id is None
    assert await AuditLog.__new__(AuditLog).handle(_poison({"user_id": "x", "junk": 1})) == Outcome.DROP
