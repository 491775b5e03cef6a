"""The task use cases: add, update, complete, reopen, delete, list, set and cancel reminders.

Every write runs in one unit of work that also records its domain event, so the task row and its
outbox row commit together.

    service = TaskService(uow_factory, clock=utc_now)
    view = service.add(actor, TaskDraft(title="Buy milk", due="tomorrow 5pm"))
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, bindparam, delete
from sqlalchemy.sql.dml import ReturningDelete
from sqlmodel import col, select
from sqlmodel.sql.expression import SelectOfScalar

from observability.tracing import traced
from tasks import listing
from tasks.clock import Clock, as_utc, utc_now, zone
from tasks.errors import InvalidInput, TaskNotFound
from tasks.events import TaskChanged, TaskEventType
from tasks.inputs import (
    MAX_RECURRENCE,
    TaskChanges,
    TaskDraft,
    TaskQuery,
    clean_description,
    clean_minutes,
    clean_priority,
    clean_tags,
    clean_title,
)
from tasks.models import Task
from tasks.recurrence import next_occurrence, to_rrule
from tasks.schemas import DeletedTask, TaskPage, TaskView, pending_reminder
from tasks.timeparse import in_range, parse_when
from tasks.unit_of_work import UnitOfWork, UnitOfWorkFactory

_TRACKED = (
    "title", "description", "priority", "tags", "due_at", "remind_at", "recurrence",
    "repeat_from", "completed",
)  # fmt: skip


@dataclass(frozen=True)
class Actor:
    """The verified user a request acts for, and the zone their words are read in."""

    user_id: str
    timezone: str = "UTC"


class TaskService:
    def __init__(self, uow_factory: UnitOfWorkFactory, *, clock: Clock = utc_now) -> None:
        self._uow = uow_factory
        self._clock = clock

    # -- reads ---------------------------------------------------------------------------
    @traced("use_case tasks.get")
    def get(self, actor: Actor, task_id: int) -> TaskView:
        with self._uow(read_only=True) as uow:
            return TaskView.of(_load(uow, actor, task_id))

    @traced("use_case tasks.list")
    def list(self, actor: Actor, query: TaskQuery) -> TaskPage:
        with self._uow(read_only=True) as uow:
            return listing.run(uow.connection(), actor.user_id, query, tz=actor.timezone, now=self._clock())

    # -- writes --------------------------------------------------------------------------
    @traced("use_case tasks.add")
    def add(self, actor: Actor, draft: TaskDraft) -> TaskView:
        now = self._clock()
        task = Task(
            owner_id=actor.user_id,
            title=clean_title(draft.title),
            description=clean_description(draft.description),
            priority=clean_priority(draft.priority),
            timezone=actor.timezone,
            created_at=now,
            updated_at=now,
        )
        task.tags = clean_tags(draft.tags)
        task.due_at = self._when(draft.due, actor, "due")
        if draft.recurrence:
            self._set_recurrence(task, draft.recurrence, draft.repeat_from, actor, now)
        task.remind_before_minutes = clean_minutes(draft.remind_before_minutes, field="remind_before_minutes")
        if draft.remind_at is not None:
            task.remind_at = self._when(draft.remind_at, actor, "remind_at", morning=True)
            task.remind_before_minutes = None
        _refresh_reminder(task, now)
        with self._uow() as uow:
            uow.insert([task])
            view = TaskView.of(task)
            uow.record(_changed("created", actor, view, now))
            uow.commit()
        return view

    def add_next_occurrence(self, uow: UnitOfWork, done: Task, *, now: datetime) -> Task | None:
        """Create the occurrence that follows ``done`` in ``uow`` (for the recurrence consumer).

        Returns None when the rule has ended. The caller commits; a unique index on
        ``previous_occurrence_id`` makes a second attempt fail instead of duplicating.
        """
        planned = _next_due(done, now)
        if planned is None:
            return None
        due, anchor = planned
        tz = done.timezone or "UTC"
        task = Task(
            owner_id=done.owner_id,
            title=done.title,
            description=done.description,
            priority=done.priority,
            tags_text=done.tags_text,
            due_at=due,
            remind_before_minutes=done.remind_before_minutes,
            recurrence=done.recurrence,
            repeat_from=done.repeat_from,
            timezone=tz,
            recurrence_anchor=done.recurrence_anchor if done.repeat_from == "due" else anchor,
            occurrence=done.occurrence + 1,
            previous_occurrence_id=done.id,
            created_at=now,
            updated_at=now,
        )
        _refresh_reminder(task, now)
        uow.session.add(task)
        uow.session.flush()
        uow.record(_changed("created", Actor(done.owner_id, tz), TaskView.of(task), now))
        return task

    @traced("use_case tasks.preview_next_due")
    def preview_next_due(self, actor: Actor, task_id: int) -> datetime | None:
        """When the occurrence after this task would be due (None: not repeating, or ended)."""
        with self._uow(read_only=True) as uow:
            planned = _next_due(_load(uow, actor, task_id), self._clock())
        return planned[0] if planned else None

    @traced("use_case tasks.update")
    def update(
        self, actor: Actor, task_id: int, changes: TaskChanges, *, expected_version: int | None = None
    ) -> TaskView:
        given = changes.model_fields_set
        now = self._clock()
        with self._uow() as uow:
            task = _load(uow, actor, task_id, for_update=True)
            _check_version(task, expected_version)
            before = _snapshot(task)
            if "title" in given:
                task.title = clean_title(changes.title or "")
            if "description" in given:
                task.description = clean_description(changes.description)
            if "priority" in given:
                task.priority = clean_priority(changes.priority)
            if "tags" in given:
                task.tags = clean_tags(changes.tags)
            if "due" in given:
                task.due_at = self._when(changes.due, actor, "due")
            if "recurrence" in given or "repeat_from" in given:
                rule = changes.recurrence if "recurrence" in given else task.recurrence
                self._set_recurrence(task, rule, changes.repeat_from, actor, now)
            if "remind_before_minutes" in given:
                task.remind_before_minutes = clean_minutes(
                    changes.remind_before_minutes, field="remind_before_minutes"
                )
                if task.remind_before_minutes is None:
                    task.remind_at = None
            kind: TaskEventType = "updated"
            if "completed" in given and changes.completed is not None:
                if changes.completed and not task.completed:
                    task.completed, task.completed_at, kind = True, now, "completed"
                elif not changes.completed and task.completed:
                    task.completed, task.completed_at, kind = False, None, "uncompleted"
            _refresh_reminder(task, now)
            return self._save(uow, actor, task, before, kind, now)

    @traced("use_case tasks.complete")
    def complete(self, actor: Actor, task_id: int) -> TaskView:
        return self.update(actor, task_id, TaskChanges(completed=True))

    @traced("use_case tasks.reopen")
    def reopen(self, actor: Actor, task_id: int) -> TaskView:
        return self.update(actor, task_id, TaskChanges(completed=False))

    @traced("use_case tasks.delete")
    def delete(self, actor: Actor, task_id: int) -> DeletedTask:
        now = self._clock()
        with self._uow() as uow:
            view = TaskView.of(_delete(uow, actor, task_id))
            uow.record(_changed("deleted", actor, view, now))
            uow.commit()
        return DeletedTask(id=task_id, title=view.title)

    @traced("use_case tasks.set_reminder")
    def set_reminder(
        self,
        actor: Actor,
        task_id: int,
        *,
        at: str | datetime | None = None,
        minutes_before_due: int | None = None,
    ) -> TaskView:
        if (at is None) == (minutes_before_due is None):
            raise InvalidInput(
                "at", "Give either 'at' (a time such as 'tomorrow 9am') or 'minutes_before_due'."
            )
        now = self._clock()
        with self._uow() as uow:
            task = _load(uow, actor, task_id, for_update=True)
            before = _snapshot(task)
            if at is not None:
                when = self._when(at, actor, "at", morning=True)
                if when is None or when <= now:
                    raise InvalidInput(
                        "at", f"The reminder time '{at}' is not in the future; pick a later time."
                    )
                task.remind_at, task.remind_before_minutes = when, None
            else:
                if task.due_at is None:
                    raise InvalidInput(
                        "minutes_before_due",
                        f"Task {task_id} has no due time; set one first or give an absolute time.",
                    )
                task.remind_before_minutes = clean_minutes(minutes_before_due, field="minutes_before_due")
            if task.completed:
                raise InvalidInput("task_id", f"Task {task_id} is already completed; reopen it first.")
            _refresh_reminder(task, now)
            return self._save(uow, actor, task, before, "updated", now)

    @traced("use_case tasks.cancel_reminder")
    def cancel_reminder(self, actor: Actor, task_id: int) -> TaskView:
        now = self._clock()
        with self._uow() as uow:
            task = _load(uow, actor, task_id, for_update=True)
            before = _snapshot(task)
            task.remind_at, task.remind_before_minutes, task.reminder_state = None, None, None
            return self._save(uow, actor, task, before, "updated", now)

    # -- helpers -------------------------------------------------------------------------
    def _save(
        self, uow: UnitOfWork, actor: Actor, task: Task, before: dict[str, Any],
        kind: TaskEventType, now: datetime,
    ) -> TaskView:  # fmt: skip
        after = _snapshot(task)
        changes = {k: [before[k], after[k]] for k in _TRACKED if before[k] != after[k]}
        if not changes:
            return TaskView.of(task)
        task.updated_at = now
        task.version += 1
        uow.update(task)
        view = TaskView.of(task)
        uow.record(_changed(kind, actor, view, now, changes))
        uow.commit()
        return view

    def _when(
        self, value: str | datetime | None, actor: Actor, field: str, *, morning: bool = False
    ) -> datetime | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if isinstance(value, datetime):
            return in_range(value, field, value.isoformat())
        return parse_when(
            value, tz=actor.timezone, now=self._clock(), field=field,
            date_only="morning" if morning else "end_of_day",
        )  # fmt: skip

    def _set_recurrence(
        self, task: Task, phrase: str | None, repeat_from: str | None, actor: Actor, now: datetime
    ) -> None:
        if repeat_from:
            task.repeat_from = repeat_from
        if not phrase:
            task.recurrence, task.recurrence_anchor = None, None
            return
        task.recurrence = to_rrule(phrase)
        if len(task.recurrence) > MAX_RECURRENCE:
            raise InvalidInput(
                "recurrence", f"The repeat rule is longer than {MAX_RECURRENCE} characters; shorten it."
            )
        if task.due_at is None:
            end_of_today = parse_when("today", tz=actor.timezone, now=now)
            first = next_occurrence(
                task.recurrence, anchor=end_of_today, after=end_of_today - timedelta(seconds=1),
                occurrence=0, tz=actor.timezone,
            )  # fmt: skip
            task.due_at = first or end_of_today
        task.recurrence_anchor = task.due_at


def _load(uow: UnitOfWork, actor: Actor, task_id: int, *, for_update: bool = False) -> Task:
    statement = _task_of_owner(for_update=for_update and uow.is_postgres)
    task = uow.session.exec(statement, params={"task_id": task_id, "owner_id": actor.user_id}).first()
    if task is None:  # another user's task is indistinguishable from a missing one
        raise TaskNotFound(task_id)
    return task


@functools.cache
def _task_of_owner(*, for_update: bool) -> SelectOfScalar[Task]:
    """One task of one owner (``SELECT ... FOR UPDATE`` with ``for_update``), built once: a
    statement built per call cost as much CPU as running it (construction and cache key)."""
    statement = select(Task).where(
        col(Task.id) == bindparam("task_id"), col(Task.owner_id) == bindparam("owner_id")
    )
    return statement.with_for_update() if for_update else statement


def _delete(uow: UnitOfWork, actor: Actor, task_id: int) -> Task:
    """Delete one of the actor's tasks and return it as it was last. Where the database has
    ``DELETE ... RETURNING``, one statement: it waits for and locks the row as ``SELECT ... FOR
    UPDATE`` did and returns the row as it deletes it; else the task is read, then deleted."""
    connection = uow.session.connection()
    if not connection.dialect.delete_returning:
        task = _load(uow, actor, task_id, for_update=True)
        uow.session.delete(task)
        return task
    row = connection.execute(_delete_of_owner(), {"task_id": task_id, "owner_id": actor.user_id}).first()
    if row is None:  # another user's task is indistinguishable from a missing one
        raise TaskNotFound(task_id)
    return listing.tasks_to_read([row])[0]


@functools.cache
def _delete_of_owner() -> ReturningDelete[Any]:
    tasks: Table = Task.__table__  # type: ignore[attr-defined]
    return (
        delete(tasks)
        .where(tasks.c.id == bindparam("task_id"), tasks.c.owner_id == bindparam("owner_id"))
        .returning(*tasks.c)
    )


def _check_version(task: Task, expected: int | None) -> None:
    from tasks.errors import VersionConflict

    if expected is not None and task.version != expected:
        assert task.id is not None
        raise VersionConflict(task.id, expected, task.version)


def _refresh_reminder(task: Task, now: datetime) -> None:
    """Derive ``remind_at`` from a relative offset and decide whether it is still pending."""
    if task.remind_before_minutes is not None:
        task.remind_at = task.due_at - timedelta(minutes=task.remind_before_minutes) if task.due_at else None
    if task.remind_at is None:
        task.reminder_state = None
    elif task.completed:
        task.reminder_state = "cancelled"
    elif task.reminder_state != "sent" or task.remind_at > now:
        task.reminder_state = "pending"


def _snapshot(task: Task) -> dict[str, Any]:
    """The tracked fields as an event's ``changes`` compare them; ``remind_at`` is the pending
    reminder, as in ``TaskView``, so completing a task with one records that it went away."""

    def plain(value: Any) -> Any:
        return as_utc(value).isoformat() if isinstance(value, datetime) else value

    snapshot = {name: plain(getattr(task, name)) for name in _TRACKED}
    snapshot["remind_at"] = plain(pending_reminder(task))
    return snapshot


def _changed(
    kind: TaskEventType, actor: Actor, view: TaskView, now: datetime,
    changes: dict[str, list[Any]] | None = None,
) -> TaskChanged:  # fmt: skip
    return TaskChanged(
        event_type=kind, user_id=actor.user_id, task_id=view.id, task_data=view,
        changes=changes or {}, timestamp=now,
    )  # fmt: skip


def _next_due(done: Task, now: datetime) -> tuple[datetime, datetime] | None:
    """The next occurrence's due time and the anchor its series continues from."""
    if not done.recurrence:
        return None
    tz = done.timezone or "UTC"
    anchor = done.recurrence_anchor or done.due_at or now
    base = done.due_at or now
    if done.repeat_from == "completion":
        anchor = _same_local_time(anchor, done.completed_at or now, tz)
        base = anchor
    due = next_occurrence(done.recurrence, anchor=anchor, after=base, occurrence=done.occurrence, tz=tz)
    return (due, anchor) if due else None


def _same_local_time(anchor: datetime, base: datetime, tz: str) -> datetime:
    """``base``'s day at ``anchor``'s local time of day: "every 3 days at 9:00" from completion."""
    local = zone(tz)
    a, b = as_utc(anchor).astimezone(local), as_utc(base).astimezone(local)
    return as_utc(b.replace(hour=a.hour, minute=a.minute, second=a.second, microsecond=0))
