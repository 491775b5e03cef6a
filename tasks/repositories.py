"""The queries consumers of task events need, asked through a unit of work (``uow.tasks``,
``uow.outbox``) so no SQL is written outside ``tasks/``.

    with uow_factory() as uow:
        done = uow.tasks.locked(task_id)        # FOR UPDATE on PostgreSQL until the unit ends
        if done is not None and uow.tasks.next_of(done.id) is None: ...
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable

from sqlalchemy import bindparam, func
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from tasks.models import OutboxEvent, ProcessedEvent, Task


class TaskRows:
    """Task rows by id, whoever owns them (consumers check the owner against the event's)."""

    def __init__(self, session: Session, *, can_lock: bool) -> None:
        self._session = session
        self._can_lock = can_lock

    def get(self, task_id: int) -> Task | None:
        return self._session.exec(_task_by_id(for_update=False), params={"task_id": task_id}).first()

    def locked(self, task_id: int) -> Task | None:
        """The task, locked until the unit of work ends (PostgreSQL; SQLite writes one at a time)."""
        statement = _task_by_id(for_update=self._can_lock)
        return self._session.exec(statement, params={"task_id": task_id}).first()

    def locked_many(self, task_ids: Iterable[int]) -> dict[int, Task]:
        """The tasks that exist among ``task_ids``, locked in id order (so two units locking
        overlapping sets cannot deadlock), by id."""
        ids = sorted(set(task_ids))
        statement = select(Task).where(col(Task.id).in_(ids)).order_by(col(Task.id))
        if self._can_lock:
            statement = statement.with_for_update()
        return {task.id: task for task in self._session.exec(statement) if task.id is not None}

    def next_of(self, task_id: int) -> int | None:
        """The id of the task made as the next occurrence of ``task_id``, if there is one."""
        statement = select(Task.id).where(Task.previous_occurrence_id == task_id)
        return self._session.exec(statement).first()


class OutboxRows:
    """Events already in the outbox, for clients that catch up on what they missed."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def of_user_after(
        self, user_id: str, after_id: int, *, topics: Collection[str], limit: int
    ) -> list[OutboxEvent]:
        """Up to ``limit`` of the user's rows on ``topics`` with ids above ``after_id``, oldest
        first; out of the session, so they stay readable after the unit of work ends."""
        statement = (
            select(OutboxEvent)
            .where(OutboxEvent.user_id == user_id, col(OutboxEvent.id) > after_id)
            .where(col(OutboxEvent.topic).in_(topics))
            .order_by(col(OutboxEvent.id))
            .limit(limit)
        )
        rows = list(self._session.exec(statement).all())
        for row in rows:
            self._session.expunge(row)
        return rows

    def last_id(self) -> int:
        """The id of the newest outbox row (0 when there is none): where a reader starting now begins."""
        return self._session.exec(select(func.max(OutboxEvent.id))).one() or 0


def processed_among(session: Session, consumer: str, event_ids: Collection[str]) -> set[str]:
    """Those of ``event_ids`` that ``consumer`` has already processed (``uow.processed_among``)."""
    statement = select(ProcessedEvent.event_id).where(
        ProcessedEvent.consumer == consumer, col(ProcessedEvent.event_id).in_(event_ids)
    )
    return set(session.exec(statement))


@functools.cache
def _task_by_id(*, for_update: bool) -> SelectOfScalar[Task]:
    """One task by id (``FOR UPDATE`` with ``for_update``), built once per variant."""
    statement = select(Task).where(col(Task.id) == bindparam("task_id"))
    return statement.with_for_update() if for_update else statement
