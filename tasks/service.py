"""The task use cases: add, update, complete, reopen, delete, list, set and cancel reminders;
lists (``lists``, ``create_list``, ``change_list``, ``delete_list``); subtasks (``parent_id``,
up to ``MAX_DEPTH`` levels); batches (``add_many``, ``change_many``); ``undo``; and ``once``,
which makes a write safe to retry with an idempotency key.

Every write runs in one unit of work that also records its domain events (one per changed task)
and its change (``tasks.changelog``, for undo), so the rows, the outbox rows, the change and an
idempotency key commit together (``_commit``).

    service = TaskService(uow_factory, clock=utc_now)
    view = service.add(actor, TaskDraft(title="Buy milk", due="tomorrow 5pm", list="groceries"))
"""

from __future__ import annotations

import builtins
import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal, TypeVar

from pydantic import BaseModel
from sqlalchemy import Table, bindparam, delete, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import configure_mappers
from sqlalchemy.sql.dml import ReturningDelete
from sqlmodel import col, select
from sqlmodel.sql.expression import SelectOfScalar

from observability.tracing import traced
from tasks import idempotency, listing, lists
from tasks.changelog import NOT_RESTORED, TABLES, ChangeSet, row_json, row_values
from tasks.clock import Clock, as_utc, utc_now, zone
from tasks.errors import InvalidInput, NeedsConfirmation, TaskNotFound, UndoRefused
from tasks.events import ListChanged, ListData, ListEventType, TaskChanged, TaskEventType
from tasks.inputs import (
    CONFIRM_OVER,
    MAX_BATCH_ADD,
    MAX_BATCH_FILTER,
    MAX_BATCH_IDS,
    MAX_RECURRENCE,
    TaskChanges,
    TaskDraft,
    TaskFilter,
    TaskQuery,
    clean_description,
    clean_list_name,
    clean_minutes,
    clean_priority,
    clean_tags,
    clean_title,
)
from tasks.models import ChangeRecord, IdempotencyKey, Task, TaskList
from tasks.recurrence import next_occurrence, to_rrule
from tasks.schemas import (
    BatchResult,
    DeletedList,
    DeletedTask,
    Lists,
    ListView,
    TaskPage,
    TaskView,
    TaskWritten,
    pending_reminder,
)
from tasks.timeparse import in_range, parse_when
from tasks.unit_of_work import UnitOfWork, UnitOfWorkFactory

_TRACKED = (
    "title", "description", "priority", "tags", "due_at", "remind_at", "recurrence",
    "repeat_from", "completed", "list_id", "parent_id",
)  # fmt: skip
#: How deep subtasks nest: a task, its subtasks and theirs (see ARCHITECTURE.md).
MAX_DEPTH: Final = 3
R = TypeVar("R", bound=BaseModel)
BatchAction = Literal["complete", "reopen", "move", "tag", "untag", "reschedule", "delete"]
ListTasks = Literal["move_to_inbox", "delete"]


@dataclass(frozen=True)
class Actor:
    """The verified user a request acts for, and the zone their words are read in."""

    user_id: str
    timezone: str = "UTC"


class UndoResult(BaseModel):
    """What an undo put back: the tasks and lists as they are now, and the tasks it removed."""

    undone_change_id: int
    change_id: int | None = None
    summary: str
    changed: list[TaskView] = []
    deleted: list[DeletedTask] = []
    lists: list[ListView] = []


class TaskService:
    def __init__(self, uow_factory: UnitOfWorkFactory, *, clock: Clock = utc_now) -> None:
        self._uow = uow_factory
        self._clock = clock
        #: Inbox ids by user, once seen committed: an Inbox is never deleted, renamed or archived,
        #: so adding to it needs no query (bounded: cleared when it grows past 10,000 users).
        self._inboxes: dict[str, int] = {}

    # -- reads ---------------------------------------------------------------------------
    @traced("use_case tasks.get")
    def get(self, actor: Actor, task_id: int) -> TaskView:
        with self._uow(read_only=True) as uow:
            return TaskView.of(_load(uow, actor, task_id))

    @traced("use_case tasks.list")
    def list(self, actor: Actor, query: TaskQuery) -> TaskPage:
        with self._uow(read_only=True) as uow:
            list_id = lists.find(uow, actor.user_id, query.list).id if query.list else None
            return listing.run(
                uow.connection(), actor.user_id, query, tz=actor.timezone, now=self._clock(), list_id=list_id
            )

    def lists(self, actor: Actor, *, include_archived: bool = False) -> Lists:
        with self._uow() as uow:  # a read that may make the Inbox
            lists.inbox(uow, actor.user_id, self._clock())
            items = lists.views(uow, actor.user_id, include_archived=include_archived)
            uow.commit()
        return Lists(items=items)

    # -- safe retries --------------------------------------------------------------------
    def once(
        self, actor: Actor, key: str | None, operation: str, arguments: Any,
        run: Callable[[], R], result_type: type[R],
    ) -> R:  # fmt: skip
        """``run()`` once per user and idempotency ``key``: a retry with the same operation and
        arguments returns the first result and writes nothing (see ``tasks.idempotency``)."""
        if key is None:
            return run()
        key = idempotency.clean_key(key)
        digest = idempotency.request_hash(operation, arguments)
        stored = self._stored_key(actor, key)
        if stored is not None:
            return _replay(stored, key, digest, result_type)
        try:
            with idempotency.storing(idempotency.PendingKey(actor.user_id, key, digest)):
                return run()
        except IntegrityError:  # a concurrent retry with the same key committed first
            stored = self._stored_key(actor, key)
            if stored is None:
                raise
            return _replay(stored, key, digest, result_type)

    def _stored_key(self, actor: Actor, key: str) -> IdempotencyKey | None:
        with self._uow(read_only=True) as uow:
            found = uow.session.get(IdempotencyKey, (actor.user_id, key))
            if found is not None:
                uow.session.expunge(found)  # readable after the unit ends
            if found is not None and found.created_at is not None:
                if found.created_at < self._clock() - idempotency.KEEP_KEYS:
                    return None  # expired: purged by the next write that stores a key
            return found

    # -- writes --------------------------------------------------------------------------
    @traced("use_case tasks.add")
    def add(self, actor: Actor, draft: TaskDraft) -> TaskWritten:
        now = self._clock()
        task = self._draft_task(actor, draft, now)
        with self._uow() as uow:
            self._place_new(uow, actor, task, draft, now)
            uow.insert([task])
            view = TaskView.of(task)
            change = ChangeSet("add", f"Added task {view.id} '{view.title}'")
            change.add("tasks", view.id, None, row_json(task))
            uow.record(_changed("created", actor, view, now))
            return self._commit(uow, actor, change, TaskWritten.written(view))

    def add_many(self, actor: Actor, drafts: Sequence[TaskDraft]) -> BatchResult:
        """Add up to ``MAX_BATCH_ADD`` tasks in one transaction; any bad one adds none."""
        if not drafts:
            raise InvalidInput("tasks", "No tasks given; give at least one task to add.")
        if len(drafts) > MAX_BATCH_ADD:
            raise InvalidInput(
                "tasks",
                f"{len(drafts)} tasks given; one call adds at most {MAX_BATCH_ADD}. Nothing was "
                f"added: split them into calls of {MAX_BATCH_ADD} or fewer.",
            )
        now = self._clock()
        with self._uow() as uow:
            made = []
            for index, draft in enumerate(drafts):
                with _item(index, draft.title):
                    task = self._draft_task(actor, draft, now)
                    self._place_new(uow, actor, task, draft, now)
                made.append(task)
            uow.insert(made)
            change = ChangeSet("add", f"Added {len(made)} tasks")
            views = [TaskView.of(task) for task in made]
            for task, view in zip(made, views, strict=True):
                change.add("tasks", view.id, None, row_json(task))
                uow.record(_changed("created", actor, view, now, batch_size=len(made)))
            result = BatchResult(action="add", matched=len(made), changed=views)
            return self._commit(uow, actor, change, result)

    def add_next_occurrence(self, uow: UnitOfWork, done: Task, *, now: datetime) -> Task | None:
        """Create the occurrence that follows ``done`` in ``uow`` (for the recurrence consumer),
        with fresh copies of its subtasks (open, due as far after the new occurrence as they
        were after the old one).

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
            list_id=done.list_id,
            parent_id=done.parent_id,
        )
        _refresh_reminder(task, now)
        uow.session.add(task)
        uow.session.flush()
        actor = Actor(done.owner_id, tz)
        uow.record(_changed("created", actor, TaskView.of(task), now))
        shift = (due - done.due_at) if done.due_at else None
        self._copy_subtasks(uow, actor, done, task, shift, now)
        return task

    def _copy_subtasks(
        self, uow: UnitOfWork, actor: Actor, old: Task, new: Task, shift: timedelta | None, now: datetime
    ) -> None:
        assert old.id is not None and new.id is not None
        for child in _children(uow, actor.user_id, [old.id]):
            copy = Task(
                owner_id=child.owner_id, title=child.title, description=child.description,
                priority=child.priority, tags_text=child.tags_text,
                due_at=(child.due_at + shift) if child.due_at and shift is not None else None,
                remind_before_minutes=child.remind_before_minutes, timezone=child.timezone,
                created_at=now, updated_at=now, list_id=new.list_id, parent_id=new.id,
            )  # fmt: skip
            _refresh_reminder(copy, now)
            uow.session.add(copy)
            uow.session.flush()
            uow.record(_changed("created", actor, TaskView.of(copy), now))
            self._copy_subtasks(uow, actor, child, copy, shift, now)

    @traced("use_case tasks.preview_next_due")
    def preview_next_due(self, actor: Actor, task_id: int) -> datetime | None:
        """When the occurrence after this task would be due (None: not repeating, or ended)."""
        with self._uow(read_only=True) as uow:
            planned = _next_due(_load(uow, actor, task_id), self._clock())
        return planned[0] if planned else None

    @traced("use_case tasks.update")
    def update(
        self, actor: Actor, task_id: int, changes: TaskChanges, *, expected_version: int | None = None,
        include_subtasks: bool = False,
    ) -> TaskWritten:  # fmt: skip
        given = changes.model_fields_set
        now = self._clock()
        with self._uow() as uow:
            task = _load(uow, actor, task_id, for_update=True)
            _check_version(task, expected_version)
            before, raw = _snapshot(task), row_json(task)
            change = ChangeSet("update", f"Changed task {task_id} '{task.title}'")
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
            followers: builtins.list[Follower] = []
            if "parent_id" in given:
                followers = self._set_parent(uow, actor, task, changes.parent_id, now)
            elif "list" in given:
                followers = self._move(uow, actor, task, changes.list, now)
            if task.parent_id is not None and task.recurrence:
                raise InvalidInput(
                    "recurrence", f"Task {task_id} is a subtask; subtasks repeat with their parent's "
                    "repeat rule. Set the rule on the parent, or make it top level (parent_id null).",
                )  # fmt: skip
            kind: TaskEventType = "updated"
            if "completed" in given and changes.completed is not None:
                if changes.completed and not task.completed:
                    followers += self._complete_subtasks(uow, actor, task, include_subtasks, now)
                    task.completed, task.completed_at, kind = True, now, "completed"
                elif not changes.completed and task.completed:
                    task.completed, task.completed_at, kind = False, None, "uncompleted"
            _refresh_reminder(task, now)
            for follower, f_before, f_raw, f_kind in followers:  # subtasks first, then their parent
                _refresh_reminder(follower, now)
                self._stage(uow, actor, follower, f_before, f_raw, f_kind, now, change)
            view = self._stage(uow, actor, task, before, raw, kind, now, change)
            return self._commit(uow, actor, change, TaskWritten.written(view))

    @traced("use_case tasks.complete")
    def complete(self, actor: Actor, task_id: int, *, include_subtasks: bool = False) -> TaskWritten:
        return self.update(actor, task_id, TaskChanges(completed=True), include_subtasks=include_subtasks)

    @traced("use_case tasks.reopen")
    def reopen(self, actor: Actor, task_id: int) -> TaskWritten:
        return self.update(actor, task_id, TaskChanges(completed=False))

    @traced("use_case tasks.delete")
    def delete(self, actor: Actor, task_id: int) -> DeletedTask:
        """Delete a task and its subtasks (one event each)."""
        now = self._clock()
        with self._uow() as uow:
            root = _delete(uow, actor, task_id)
            change = ChangeSet("delete", f"Deleted task {task_id} '{root.title}'")
            for task in [root, *_delete_tree(uow, actor, [task_id])]:
                change.add("tasks", task.id or 0, row_json(task), None)
                uow.record(_changed("deleted", actor, TaskView.of(task), now))
            return self._commit(uow, actor, change, DeletedTask(id=task_id, title=root.title))

    def count_matching(self, actor: Actor, filter: TaskFilter) -> int:
        """How many of the actor's tasks ``filter`` matches, as a batch by filter would choose
        them (up to one more than a batch may change): what a confirmation question names."""
        with self._uow(read_only=True) as uow:
            list_id = lists.find(uow, actor.user_id, filter.list).id if filter.list else None
            return len(
                listing.matching_ids(
                    uow.session.connection(),
                    actor.user_id,
                    filter,
                    tz=actor.timezone,
                    now=self._clock(),
                    list_id=list_id,
                    limit=MAX_BATCH_FILTER + 1,
                )  # fmt: skip
            )

    def change_many(
        self, actor: Actor, action: BatchAction, *, task_ids: Sequence[int] | None = None,
        filter: TaskFilter | None = None, to_list: str | None = None, tags: Sequence[str] | None = None,
        due: str | datetime | None = None, include_subtasks: bool = False, confirm: bool = False,
    ) -> BatchResult:  # fmt: skip
        """Complete, reopen, move, tag, untag, reschedule or delete the tasks named by
        ``task_ids`` or matched by ``filter``, in one transaction with one event per changed task.
        A filter matching more than ``CONFIRM_OVER`` tasks needs ``confirm`` (``NeedsConfirmation``)."""
        now = self._clock()
        with self._uow() as uow:
            target_list = lists.for_new_task(uow, actor.user_id, to_list, now) if action == "move" else None
            chosen = self._choose(uow, actor, action, task_ids, filter, confirm, now)
            if action == "delete":
                return self._delete_many(uow, actor, chosen, now)
            change = ChangeSet(action, f"{action.capitalize()} {len(chosen)} tasks")
            staged: builtins.list[Follower] = []
            followers: builtins.list[Follower] = []
            clean = clean_tags(list_of(tags)) if action in ("tag", "untag") else []
            if action in ("tag", "untag") and not clean:
                raise InvalidInput("tags", f"Give the tags to {action}, e.g. ['home'].")
            new_due = self._when(due, actor, "due") if action == "reschedule" else None
            chosen_ids = {t.id for t in chosen}
            parents = _with_subtasks(uow, actor.user_id, [t.id for t in chosen if t.id is not None])
            for task in chosen:
                before, raw = _snapshot(task), row_json(task)
                kind: TaskEventType = "updated"
                if action == "complete" and not task.completed:
                    more = (
                        self._complete_subtasks(uow, actor, task, include_subtasks, now, chosen_ids)
                        if task.id in parents
                        else []
                    )
                    followers += more
                    chosen_ids |= {f[0].id for f in more}
                    task.completed, task.completed_at, kind = True, now, "completed"
                elif action == "reopen" and task.completed:
                    task.completed, task.completed_at, kind = False, None, "uncompleted"
                elif action == "move" and target_list is not None:
                    if task.parent_id is not None and task.parent_id not in chosen_ids:
                        raise InvalidInput(
                            "list", f"Task {task.id} '{task.title}' is a subtask; it moves with its "
                            f"parent (task {task.parent_id}). Nothing was moved.",
                        )  # fmt: skip
                    task.list_id = target_list.id
                    for child in _descendants(uow, actor.user_id, task) if task.id in parents else []:
                        if child.id not in chosen_ids:
                            followers.append(_follow(child, "updated"))
                            chosen_ids.add(child.id)
                            child.list_id = target_list.id
                elif action == "tag":
                    task.tags = clean_tags([*task.tags, *clean])
                elif action == "untag":
                    task.tags = [t for t in task.tags if t not in clean]
                elif action == "reschedule":
                    task.due_at = new_due
                _refresh_reminder(task, now)
                staged.append((task, before, raw, kind))
            views = []
            for task, before, raw, kind in [*staged, *followers]:
                _refresh_reminder(task, now)
                views.append(self._stage(uow, actor, task, before, raw, kind, now, change))
            touched = change.task_ids()
            changed = [v for v in views if v.id in touched]
            unchanged = [v for v in views if v.id not in touched]
            for event in uow.recorded:
                if isinstance(event, TaskChanged):
                    event.batch_size = len(changed)
            result = BatchResult(
                action=action, matched=len(chosen), changed=changed,
                unchanged_ids=[v.id for v in unchanged],
            )  # fmt: skip
            return self._commit(uow, actor, change, result)

    def _choose(
        self, uow: UnitOfWork, actor: Actor, action: str, task_ids: Sequence[int] | None,
        filter: TaskFilter | None, confirm: bool, now: datetime,
    ) -> builtins.list[Task]:  # fmt: skip
        """The tasks a batch names, locked in id order; every id must be one of the actor's."""
        if (task_ids is None) == (filter is None):
            raise InvalidInput("task_ids", "Give either task_ids (a list of ids) or filter, not both.")
        if task_ids is not None:
            ids = list(dict.fromkeys(task_ids))
            if not ids:
                raise InvalidInput("task_ids", "task_ids is empty; name at least one task.")
            if len(ids) > MAX_BATCH_IDS:
                raise InvalidInput(
                    "task_ids", f"{len(ids)} ids given; one call takes at most {MAX_BATCH_IDS}. "
                    "Use a filter, or split the ids.",
                )  # fmt: skip
        else:
            assert filter is not None
            list_id = lists.find(uow, actor.user_id, filter.list).id if filter.list else None
            ids = listing.matching_ids(
                uow.session.connection(), actor.user_id, filter, tz=actor.timezone, now=now,
                list_id=list_id, limit=MAX_BATCH_FILTER + 1,
            )  # fmt: skip
            if len(ids) > MAX_BATCH_FILTER:
                raise InvalidInput(
                    "filter", f"The filter matches more than {MAX_BATCH_FILTER} tasks; one call changes "
                    "at most that many. Narrow the filter.",
                )  # fmt: skip
            if len(ids) > CONFIRM_OVER and not confirm:
                raise NeedsConfirmation(action, len(ids), CONFIRM_OVER)
        found = uow.tasks.locked_many(ids)
        missing = [i for i in ids if i not in found or found[i].owner_id != actor.user_id]
        if missing:
            named = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
            raise InvalidInput("task_ids", f"Tasks not found: {named}. Nothing was changed.")
        return [found[i] for i in ids]

    def _delete_many(
        self, uow: UnitOfWork, actor: Actor, chosen: Sequence[Task], now: datetime
    ) -> BatchResult:
        ids = [t.id for t in chosen if t.id is not None]
        gone = _delete_rows(uow, actor, ids)
        gone += _delete_tree(uow, actor, ids)
        change = ChangeSet("delete", f"Deleted {len(gone)} tasks")
        for task in gone:
            view = TaskView.of(task)
            change.add("tasks", view.id, row_json(task), None)
            uow.record(_changed("deleted", actor, view, now, batch_size=len(gone)))
        deleted = [DeletedTask(id=t.id or 0, title=t.title) for t in gone]
        return self._commit(
            uow, actor, change, BatchResult(action="delete", matched=len(chosen), deleted=deleted)
        )

    @traced("use_case tasks.set_reminder")
    def set_reminder(
        self,
        actor: Actor,
        task_id: int,
        *,
        at: str | datetime | None = None,
        minutes_before_due: int | None = None,
    ) -> TaskWritten:
        if (at is None) == (minutes_before_due is None):
            raise InvalidInput(
                "at", "Give either 'at' (a time such as 'tomorrow 9am') or 'minutes_before_due'."
            )
        now = self._clock()
        with self._uow() as uow:
            task = _load(uow, actor, task_id, for_update=True)
            before, raw = _snapshot(task), row_json(task)
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
            change = ChangeSet("reminder", f"Set a reminder on task {task_id} '{task.title}'")
            view = self._stage(uow, actor, task, before, raw, "updated", now, change)
            return self._commit(uow, actor, change, TaskWritten.written(view))

    @traced("use_case tasks.cancel_reminder")
    def cancel_reminder(self, actor: Actor, task_id: int) -> TaskWritten:
        now = self._clock()
        with self._uow() as uow:
            task = _load(uow, actor, task_id, for_update=True)
            before, raw = _snapshot(task), row_json(task)
            task.remind_at, task.remind_before_minutes, task.reminder_state = None, None, None
            change = ChangeSet("reminder", f"Cancelled the reminder of task {task_id} '{task.title}'")
            view = self._stage(uow, actor, task, before, raw, "updated", now, change)
            return self._commit(uow, actor, change, TaskWritten.written(view))

    # -- lists ---------------------------------------------------------------------------
    def create_list(self, actor: Actor, name: str) -> ListView:
        now = self._clock()
        name = clean_list_name(name)
        with self._uow() as uow:
            lists.inbox(uow, actor.user_id, now)
            self._name_free(uow, actor, name)
            row = TaskList(
                owner_id=actor.user_id, name=name, name_key=name.lower(), created_at=now, updated_at=now
            )
            uow.insert([row])
            change = ChangeSet("create_list", f"Created list '{name}'")
            change.add("task_lists", row.id or 0, None, row_json(row))
            uow.record(_list_changed("created", actor, row, now))
            return self._commit(uow, actor, change, ListView.of(row))

    def change_list(
        self, actor: Actor, ref: str, *, name: str | None = None, archived: bool | None = None
    ) -> ListView:
        """Rename a list, or archive it (hidden from ``lists``, no new tasks) or unarchive it."""
        now = self._clock()
        with self._uow() as uow:
            row = lists.find(uow, actor.user_id, ref, for_update=True, now=now)
            raw = row_json(row)
            events: builtins.list[ListEventType] = []
            if row.is_inbox and (name is not None or archived):
                raise InvalidInput(
                    "list", "The Inbox cannot be renamed or archived; it is where tasks go by default."
                )
            if name is not None and clean_list_name(name) != row.name:
                name = clean_list_name(name)
                if name.lower() != row.name_key:
                    self._name_free(uow, actor, name)
                row.name, row.name_key = name, name.lower()
                events.append("renamed")
            if archived is not None and archived != (row.archived_at is not None):
                row.archived_at = now if archived else None
                events.append("archived" if archived else "unarchived")
            if not events:
                return ListView.of(row)
            row.version += 1
            row.updated_at = now
            uow.session.add(row)
            uow.session.flush()
            change = ChangeSet("change_list", f"{' and '.join(events).capitalize()} list '{row.name}'")
            change.add("task_lists", row.id or 0, raw, row_json(row))
            for kind in events:
                uow.record(_list_changed(kind, actor, row, now, _diff(raw, row_json(row))))
            return self._commit(uow, actor, change, ListView.of(row))

    def delete_list(self, actor: Actor, ref: str, *, tasks: ListTasks | None = None) -> DeletedList:
        """Delete a list; its tasks go to the Inbox (``move_to_inbox``) or with it (``delete``).
        A list that still has tasks is not deleted unless ``tasks`` says which."""
        now = self._clock()
        with self._uow() as uow:
            row = lists.find(uow, actor.user_id, ref, for_update=True, now=now)
            if row.is_inbox:
                raise InvalidInput("list", "The Inbox cannot be deleted; it is where tasks go by default.")
            inside = lists.tasks_in(uow, actor.user_id, row.id or 0)
            if inside and tasks is None:
                raise InvalidInput(
                    "tasks", f"The list '{row.name}' has {len(inside)} tasks; say what happens to them: "
                    "tasks='move_to_inbox' or tasks='delete'. Nothing was deleted.",
                )  # fmt: skip
            change = ChangeSet("delete_list", f"Deleted list '{row.name}'")
            moved = deleted = 0
            if tasks == "delete" and inside:
                gone = _delete_rows(uow, actor, [t.id for t in inside if t.id is not None])
                gone += _delete_tree(uow, actor, [t.id for t in gone if t.id is not None])
                for task in gone:
                    change.add("tasks", task.id or 0, row_json(task), None)
                    uow.record(_changed("deleted", actor, TaskView.of(task), now, batch_size=len(gone)))
                deleted = len(gone)
            elif inside:
                inbox = lists.inbox(uow, actor.user_id, now)
                for task in inside:
                    before, raw = _snapshot(task), row_json(task)
                    task.list_id = inbox.id
                    self._stage(uow, actor, task, before, raw, "updated", now, change)
                moved = len(inside)
            change.add("task_lists", row.id or 0, row_json(row), None)
            uow.record(_list_changed("deleted", actor, row, now))
            uow.session.delete(row)
            uow.session.flush()
            result = DeletedList(
                id=row.id or 0, name=row.name, tasks_moved_to_inbox=moved, tasks_deleted=deleted
            )
            return self._commit(uow, actor, change, result)

    def _name_free(self, uow: UnitOfWork, actor: Actor, name: str) -> None:
        taken = uow.session.exec(
            select(TaskList.id).where(
                col(TaskList.owner_id) == actor.user_id, col(TaskList.name_key) == name.lower()
            )
        ).first()
        if taken is not None:
            raise InvalidInput("name", f"You already have a list named '{name}'; pick another name.")

    # -- undo ----------------------------------------------------------------------------
    def undo(self, actor: Actor, change_id: int | None = None) -> UndoResult:
        """Revert the actor's last write (or ``change_id``) exactly, as a new write with its own
        events; undoing an undo redoes. Refused, writing nothing, when the change was already
        undone or a row it touched has changed since."""
        now = self._clock()
        with self._uow() as uow:
            uow.serialize_writes()  # SQLite: two undos of one change take turns
            record = _change_of(uow, actor, change_id)
            if record.undone_by_id is not None:
                raise UndoRefused(
                    f"Change {record.id} ('{record.summary}') was already undone by change "
                    f"{record.undone_by_id}; undo that one to redo it. Nothing was changed."
                )
            summary = f"Undid: {record.summary}"
            change = ChangeSet("undo", summary, undoes_id=record.id)
            result = UndoResult(undone_change_id=record.id or 0, summary=summary)
            touched = {(e["table"], e["id"]) for e in record.entries}
            found = _lock_rows(uow, touched)
            for entry in reversed(record.entries):
                self._revert(uow, actor, entry, touched, found, change, result, now)
            record.undone_by_id = -1  # set to the new change's id by _commit
            uow.session.add(record)
            return self._commit(uow, actor, change, result, undone=record)

    def _revert(
        self, uow: UnitOfWork, actor: Actor, entry: dict[str, Any], touched: set[tuple[str, int]],
        found: dict[tuple[str, int], Any], change: ChangeSet, result: UndoResult, now: datetime,
    ) -> None:  # fmt: skip
        table_name, row_id, before, after = entry["table"], entry["id"], entry["before"], entry["after"]
        model = TABLES[table_name]
        table: Table = model.__table__  # type: ignore[attr-defined]
        current = found.get((table_name, row_id))  # read and locked by ``_lock_rows``
        if current is not None and current.owner_id != actor.user_id:
            current = None
        what = "Task" if table_name == "tasks" else "List"
        label = (
            f"{what} {row_id} '{(after or before or {}).get('title') or (after or before or {}).get('name')}'"
        )
        if after is None:  # the change deleted the row: put it back
            if current is not None:
                raise UndoRefused(f"{label} exists again; nothing was changed.")
            values = row_values(model, before) | {"updated_at": now}
            uow.session.connection().execute(insert(table), values)
            configure_mappers()  # a no-op once done; a constructed row's fields can then be read
            restored = model.model_construct(**values)
            change.add(table_name, row_id, None, row_json(restored))
            self._reverted(uow, actor, restored, None, change, result, now)
            return
        if current is None or current.version != after["version"]:
            now_is = "is gone" if current is None else f"is at version {current.version}"
            raise UndoRefused(
                f"{label} changed since (it {now_is}; the change left version {after['version']}); "
                "undo refused so nothing is guessed. Nothing was changed."
            )
        old = row_json(current)
        if before is None:  # the change made the row: remove it, unless others hang from it
            self._check_nothing_hangs_from(uow, actor, table_name, row_id, touched, label)
            uow.session.delete(current)
            uow.session.flush()
            change.add(table_name, row_id, old, None)
            self._reverted(uow, actor, None, current, change, result, now)
            return
        for key, value in row_values(model, before).items():
            if key not in NOT_RESTORED:
                setattr(current, key, value)
        current.version += 1
        current.updated_at = now
        if isinstance(current, Task):
            _refresh_reminder(current, now)
        change.add(table_name, row_id, old, row_json(current))
        self._reverted(
            uow, actor, current, model.model_construct(**row_values(model, old)), change, result, now
        )

    def _check_nothing_hangs_from(
        self,
        uow: UnitOfWork,
        actor: Actor,
        table: str,
        row_id: int,
        touched: set[tuple[str, int]],
        label: str,
    ) -> None:
        column = col(Task.parent_id) if table == "tasks" else col(Task.list_id)
        others = uow.session.exec(
            select(Task.id).where(col(Task.owner_id) == actor.user_id, column == row_id)
        )
        strangers = [i for i in others if ("tasks", i) not in touched]
        if strangers:
            kind = "subtasks" if table == "tasks" else "tasks"
            raise UndoRefused(
                f"{label} has {kind} added since ({', '.join(map(str, strangers[:5]))}); removing it "
                "would orphan them. Nothing was changed."
            )

    def _reverted(
        self, uow: UnitOfWork, actor: Actor, now_row: Any, old_row: Any, change: ChangeSet,
        result: UndoResult, now: datetime,
    ) -> None:  # fmt: skip
        """Record the event for one reverted row and add it to the result."""
        row = now_row if now_row is not None else old_row
        if isinstance(row, TaskList):
            kind: ListEventType = (
                "restored" if old_row is None else "deleted" if now_row is None else "renamed"
            )
            if old_row is not None and now_row is not None and old_row.name == now_row.name:
                kind = "archived" if now_row.archived_at else "unarchived"
            uow.record(_list_changed(kind, actor, row, now, change_id=None))
            if now_row is not None:
                result.lists.append(ListView.of(now_row))
            return
        if now_row is None:
            view = TaskView.of(old_row)
            uow.record(_changed("deleted", actor, view, now))
            result.deleted.append(DeletedTask(id=view.id, title=view.title))
            return
        view = TaskView.of(now_row)
        if old_row is None:
            uow.record(_changed("created", actor, view, now))
        else:
            before, after = _snapshot(old_row), _snapshot(now_row)
            diff = {k: [before[k], after[k]] for k in _TRACKED if before[k] != after[k]}
            kind_t: TaskEventType = "updated"
            if "completed" in diff:
                kind_t = "completed" if now_row.completed else "uncompleted"
            uow.record(_changed(kind_t, actor, view, now, diff))
        result.changed.append(view)

    # -- helpers -------------------------------------------------------------------------
    def _commit(
        self,
        uow: UnitOfWork,
        actor: Actor,
        change: ChangeSet,
        result: R,
        *,
        undone: ChangeRecord | None = None,
    ) -> R:
        """Store the change (for undo) and the idempotency key, if any, with the write, and commit.
        The change's id goes on every event of the write and on a result that has ``change_id``."""
        if change.entries:
            record = ChangeRecord(
                owner_id=actor.user_id, action=change.action, summary=change.summary[:1000],
                entries=change.entries, undoes_id=change.undoes_id, created_at=self._clock(),
            )  # fmt: skip
            uow.insert([record])
            for event in uow.recorded:
                if isinstance(event, TaskChanged | ListChanged):
                    event.change_id = record.id
            if "change_id" in type(result).model_fields:
                result = result.model_copy(update={"change_id": record.id})
            if undone is not None:
                undone.undone_by_id = record.id
                uow.session.add(undone)
                uow.session.flush()
        elif undone is not None:
            raise UndoRefused(f"Change {undone.id} changed nothing to undo.")
        key = idempotency.pending()
        if key is not None:
            now = self._clock()
            uow.session.execute(
                delete(IdempotencyKey).where(
                    col(IdempotencyKey.owner_id) == actor.user_id,
                    col(IdempotencyKey.created_at) < now - idempotency.KEEP_KEYS,
                )
            )
            uow.session.execute(
                insert(IdempotencyKey.__table__),  # type: ignore[attr-defined]
                {"owner_id": key.owner_id, "key": key.key, "request_hash": key.request_hash,
                 "response": result.model_dump(mode="json"), "created_at": now},
            )  # fmt: skip
        uow.commit()
        return result

    def _stage(
        self, uow: UnitOfWork, actor: Actor, task: Task, before: dict[str, Any], raw: dict[str, Any],
        kind: TaskEventType, now: datetime, change: ChangeSet,
    ) -> TaskView:  # fmt: skip
        """Write the task's changes (if any) in ``uow`` with its event and change entry."""
        after = _snapshot(task)
        changes = {k: [before[k], after[k]] for k in _TRACKED if before[k] != after[k]}
        if not changes:
            return TaskView.of(task)
        task.updated_at = now
        task.version += 1
        view = TaskView.of(task)
        change.add("tasks", view.id, raw, row_json(task))
        uow.update(task)
        uow.record(_changed(kind, actor, view, now, changes))
        return view

    def _draft_task(self, actor: Actor, draft: TaskDraft, now: datetime) -> Task:
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
        return task

    def _place_new(self, uow: UnitOfWork, actor: Actor, task: Task, draft: TaskDraft, now: datetime) -> None:
        """Put a new task in its list, or under its parent (then in the parent's list)."""
        if draft.parent_id is None and draft.list is None:
            task.list_id = self._inbox_id(uow, actor, now)
            return
        if draft.parent_id is None:
            task.list_id = lists.for_new_task(uow, actor.user_id, draft.list, now).id
            return
        parent = _parent(uow, actor, draft.parent_id)
        if len(_ancestors(uow, actor, parent)) + 2 > MAX_DEPTH:
            raise InvalidInput(
                "parent_id", f"Task {parent.id} is already {MAX_DEPTH - 1} levels deep; subtasks nest "
                f"at most {MAX_DEPTH} levels. Pick a task higher up.",
            )  # fmt: skip
        if task.recurrence:
            raise InvalidInput(
                "recurrence", "A subtask repeats with its parent; set the repeat rule on the parent."
            )
        if draft.list is not None:
            named = lists.find(uow, actor.user_id, draft.list, now=now)
            if named.id != parent.list_id:
                raise InvalidInput(
                    "list", f"A subtask is in its parent's list; task {parent.id} is not in '{named.name}'."
                )
        task.parent_id = parent.id
        task.list_id = parent.list_id or lists.inbox(uow, actor.user_id, now).id

    def _inbox_id(self, uow: UnitOfWork, actor: Actor, now: datetime) -> int | None:
        """The user's Inbox id, remembered once seen committed (see ``_inboxes``)."""
        if (known := self._inboxes.get(actor.user_id)) is not None:
            return known
        found = lists.existing_inbox(uow, actor.user_id)
        if found is None:
            return lists.inbox(uow, actor.user_id, now).id  # made now: not remembered until seen again
        if len(self._inboxes) > 10_000:
            self._inboxes.clear()
        if found.id is not None:
            self._inboxes[actor.user_id] = found.id
        return found.id

    def _set_parent(
        self, uow: UnitOfWork, actor: Actor, task: Task, parent_id: int | None, now: datetime
    ) -> builtins.list[Follower]:
        """Make ``task`` a subtask of ``parent_id`` (None: top level); its subtree follows it to
        the parent's list. Returns the subtasks that moved (not yet staged)."""
        if parent_id is None:
            task.parent_id = None
            return []
        if parent_id == task.id:
            raise InvalidInput("parent_id", f"Task {task.id} cannot be its own parent.")
        parent = _parent(uow, actor, parent_id)
        chain = _ancestors(uow, actor, parent)
        if task.id in {a.id for a in chain}:
            path = " -> ".join(str(a.id) for a in reversed([parent, *chain]))
            raise InvalidInput(
                "parent_id", f"Task {parent_id} is inside task {task.id} ({path}); making it the "
                f"parent would be a cycle. Pick a task outside task {task.id}.",
            )  # fmt: skip
        below = _descendants(uow, actor.user_id, task)
        height = _height(uow, actor.user_id, task)
        if len(chain) + 1 + height > MAX_DEPTH:
            raise InvalidInput(
                "parent_id", f"Under task {parent_id}, task {task.id} and its subtasks would be more "
                f"than {MAX_DEPTH} levels deep; subtasks nest at most {MAX_DEPTH} levels.",
            )  # fmt: skip
        task.parent_id = parent.id
        task.list_id = parent.list_id
        return _move_all(below, parent.list_id)

    def _move(
        self, uow: UnitOfWork, actor: Actor, task: Task, ref: str | None, now: datetime
    ) -> builtins.list[Follower]:
        """Move a top-level task (and its subtasks) to the list ``ref`` (None: the Inbox)."""
        if task.parent_id is not None:
            raise InvalidInput(
                "list", f"Task {task.id} is a subtask of task {task.parent_id} and lives in its list; "
                "move the parent, or make it top level (parent_id null) first.",
            )  # fmt: skip
        target = lists.for_new_task(uow, actor.user_id, ref, now)
        task.list_id = target.id
        return _move_all(_descendants(uow, actor.user_id, task), target.id)

    def _complete_subtasks(
        self, uow: UnitOfWork, actor: Actor, task: Task, include: bool, now: datetime,
        also_done: set[Any] | None = None,
    ) -> builtins.list[Follower]:  # fmt: skip
        """A parent is completed only with its subtasks: refuse while any is open, unless
        ``include`` (then they are completed too; returned, not yet staged)."""
        below = _descendants(uow, actor.user_id, task)
        open_ones = [t for t in below if not t.completed and t.id not in (also_done or set())]
        if open_ones and not include:
            names = ", ".join(f"{t.id} '{t.title}'" for t in open_ones[:5])
            raise InvalidInput(
                "include_subtasks", f"Task {task.id} '{task.title}' has {len(open_ones)} open subtasks "
                f"({names}); complete them first, or pass include_subtasks=true to complete them too. "
                "Nothing was completed.",
            )  # fmt: skip
        followers = [_follow(child, "completed") for child in open_ones]
        for child in open_ones:
            child.completed, child.completed_at = True, now
        return followers

    # -- helpers -------------------------------------------------------------------------
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


#: A task about to change along with another (a subtask), with what it was before.
Follower = tuple[Task, dict[str, Any], dict[str, Any], TaskEventType]


def _follow(task: Task, kind: TaskEventType) -> Follower:
    return (task, _snapshot(task), row_json(task), kind)


def _move_all(tasks: Sequence[Task], list_id: int | None) -> list[Follower]:
    followers = [_follow(t, "updated") for t in tasks]
    for task in tasks:
        task.list_id = list_id
    return followers


def list_of(values: Sequence[str] | None) -> list[str]:
    return [*(values or [])]


@contextlib.contextmanager
def _item(index: int, title: str) -> Iterator[None]:
    """Name the item of a batch a bad field belongs to."""
    try:
        yield
    except InvalidInput as exc:
        raise InvalidInput(
            f"tasks[{index}].{exc.field}",
            f"Task {index + 1} ('{title[:40]}'): {exc.message} Nothing was added.",
        ) from exc


def _replay(stored: IdempotencyKey, key: str, digest: str, result_type: type[R]) -> R:
    if stored.request_hash != digest:
        raise idempotency.mismatch(key)
    return result_type.model_validate(stored.response)


def _parent(uow: UnitOfWork, actor: Actor, parent_id: int) -> Task:
    try:
        return _load(uow, actor, parent_id, for_update=True)
    except TaskNotFound:
        raise InvalidInput(
            "parent_id", f"There is no task {parent_id} to be the parent; list_tasks shows the ids."
        ) from None


def _children(uow: UnitOfWork, owner_id: str, parent_ids: Sequence[int]) -> list[Task]:
    """The subtasks of these tasks (locked on PostgreSQL), in id order."""
    if not parent_ids:
        return []
    statement = _children_of(for_update=uow.is_postgres)
    return list(uow.session.exec(statement, params={"owner_id": owner_id, "ids": list(parent_ids)}))


@functools.cache
def _children_of(*, for_update: bool) -> SelectOfScalar[Task]:
    """The subtasks of some tasks of one owner, built once per variant (see ``_task_of_owner``)."""
    statement = select(Task).where(
        col(Task.owner_id) == bindparam("owner_id"), col(Task.parent_id).in_(bindparam("ids", expanding=True))
    )
    statement = statement.order_by(col(Task.id))
    return statement.with_for_update() if for_update else statement


def _lock_rows(uow: UnitOfWork, keys: set[tuple[str, int]]) -> dict[tuple[str, int], Any]:
    """Read (and on PostgreSQL lock, in id order) every row an undo touches, one query per
    table (a thousand ids at a time), by (table, id)."""
    found: dict[tuple[str, int], Any] = {}
    for name, model in TABLES.items():
        ids = sorted(i for table, i in keys if table == name)
        for start in range(0, len(ids), 1000):
            statement = select(model).where(col(model.id).in_(ids[start : start + 1000]))  # type: ignore[attr-defined]
            if uow.is_postgres:
                statement = statement.order_by(col(model.id)).with_for_update()  # type: ignore[attr-defined]
            found |= {(name, row.id): row for row in uow.session.exec(statement)}  # type: ignore[attr-defined]
    return found


def _with_subtasks(uow: UnitOfWork, owner_id: str, ids: Sequence[int]) -> set[int]:
    """Those of ``ids`` that have subtasks: one query, so a batch asks for the subtasks of
    those only."""
    if not ids:
        return set()
    statement = select(Task.parent_id).where(col(Task.owner_id) == owner_id, col(Task.parent_id).in_(ids))
    with uow.session.no_autoflush:
        return {i for i in uow.session.exec(statement.distinct()) if i is not None}


def _levels(uow: UnitOfWork, owner_id: str, task: Task) -> list[list[Task]]:
    """The task's subtasks level by level (at most ``MAX_DEPTH`` levels are ever stored)."""
    levels: list[list[Task]] = []
    ids = [task.id] if task.id is not None else []
    for _ in range(MAX_DEPTH + 1):  # bounded even if the data were not
        below = _children(uow, owner_id, ids)
        if not below:
            break
        levels.append(below)
        ids = [t.id for t in below if t.id is not None]
    return levels


def _descendants(uow: UnitOfWork, owner_id: str, task: Task) -> list[Task]:
    return [t for level in _levels(uow, owner_id, task) for t in level]


def _height(uow: UnitOfWork, owner_id: str, task: Task) -> int:
    """Levels in the task's subtree, itself included."""
    return 1 + len(_levels(uow, owner_id, task))


def _ancestors(uow: UnitOfWork, actor: Actor, task: Task) -> list[Task]:
    """The tasks above this one, nearest first."""
    chain: list[Task] = []
    current = task
    for _ in range(MAX_DEPTH + 1):
        if current.parent_id is None:
            break
        parent = uow.session.get(Task, current.parent_id)
        if parent is None or parent.owner_id != actor.user_id:
            break
        chain.append(parent)
        current = parent
    return chain


def _delete_rows(uow: UnitOfWork, actor: Actor, ids: Sequence[int]) -> list[Task]:
    """Delete these of the actor's tasks; returns them as they were last."""
    if not ids:
        return []
    tasks: Table = Task.__table__  # type: ignore[attr-defined]
    connection = uow.session.connection()
    where = (tasks.c.owner_id == actor.user_id, tasks.c.id.in_(ids))
    if connection.dialect.delete_returning:
        rows = connection.execute(delete(tasks).where(*where).returning(*tasks.c)).all()
        return listing.tasks_to_read(rows)
    rows = connection.execute(tasks.select().where(*where)).all()
    connection.execute(delete(tasks).where(*where))
    return listing.tasks_to_read(rows)


def _delete_tree(uow: UnitOfWork, actor: Actor, ids: Sequence[int]) -> list[Task]:
    """Delete the subtasks (at every level) of these tasks; returns them."""
    connection = uow.session.connection()
    gone: list[Task] = []
    parents = list(ids)
    for _ in range(MAX_DEPTH + 1):
        if not parents:
            break
        child_ids = list(
            connection.execute(_child_ids(), {"owner_id": actor.user_id, "ids": parents}).scalars()
        )
        below = _delete_rows(uow, actor, child_ids)
        gone += below
        parents = [t.id for t in below if t.id is not None]
    return gone


@functools.cache
def _child_ids() -> Any:
    tasks: Table = Task.__table__  # type: ignore[attr-defined]
    return select(tasks.c.id).where(
        tasks.c.owner_id == bindparam("owner_id"), tasks.c.parent_id.in_(bindparam("ids", expanding=True))
    )


def _change_of(uow: UnitOfWork, actor: Actor, change_id: int | None) -> ChangeRecord:
    statement = select(ChangeRecord).where(col(ChangeRecord.owner_id) == actor.user_id)
    if change_id is not None:
        statement = statement.where(col(ChangeRecord.id) == change_id)
    statement = statement.order_by(col(ChangeRecord.id).desc()).limit(1)
    if uow.is_postgres:
        statement = statement.with_for_update()
    found = uow.session.exec(statement).first()
    if found is None and change_id is not None:
        raise InvalidInput("change_id", f"There is no change {change_id} of yours to undo.")
    if found is None:
        raise UndoRefused("Nothing to undo: you have not changed anything yet.")
    return found


def _list_changed(
    kind: ListEventType, actor: Actor, row: TaskList, now: datetime,
    changes: dict[str, list[Any]] | None = None, change_id: int | None = None,
) -> ListChanged:  # fmt: skip
    data = ListData(
        id=row.id or 0, name=row.name, is_inbox=row.is_inbox, archived=row.archived_at is not None,
        version=row.version,
    )  # fmt: skip
    return ListChanged(
        event_type=kind, user_id=actor.user_id, list_id=row.id or 0, list_data=data,
        changes=changes or {}, timestamp=now, change_id=change_id,
    )  # fmt: skip


def _diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    return {k: [before[k], after[k]] for k in ("name", "archived_at") if before.get(k) != after.get(k)}


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
    changes: dict[str, list[Any]] | None = None, *, batch_size: int | None = None,
) -> TaskChanged:  # fmt: skip
    return TaskChanged(
        event_type=kind, user_id=actor.user_id, task_id=view.id, task_data=view,
        changes=changes or {}, timestamp=now, batch_size=batch_size,
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
