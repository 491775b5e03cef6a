"""Lists (projects): finding a user's list by name or id, and the Inbox every user has.

Used inside a unit of work by the use cases (``tasks.service``); no SQL about lists is
written elsewhere.

    inbox = lists.inbox(uow, "alice", now)           # made on first use, once per user
    work = lists.find(uow, "alice", "work")          # by name (any case) or by id ("7")
"""

from __future__ import annotations

import functools
from datetime import datetime

from sqlalchemy import Insert, Table, bindparam, func
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select
from sqlmodel.sql.expression import SelectOfScalar

from tasks.clock import utc_now
from tasks.errors import InvalidInput
from tasks.inputs import MAX_ID
from tasks.models import Task, TaskList
from tasks.schemas import ListView
from tasks.unit_of_work import UnitOfWork

INBOX = "Inbox"


def inbox(uow: UnitOfWork, owner_id: str, now: datetime) -> TaskList:
    """The user's Inbox, made the first time it is needed. Two first writes at once both
    insert it with ``ON CONFLICT DO NOTHING`` on the unique name: one wins, both read it."""
    found = existing_inbox(uow, owner_id)
    if found is not None:
        return found
    values = {"owner_id": owner_id, "name": INBOX, "name_key": INBOX.lower(), "is_inbox": True,
              "archived_at": None, "created_at": now, "updated_at": now, "version": 1}  # fmt: skip
    uow.session.connection().execute(_insert_inbox(uow.session.connection().dialect.name), values)
    made = uow.session.exec(_inbox_of(), params={"owner_id": owner_id}).first()
    assert made is not None
    return made


def existing_inbox(uow: UnitOfWork, owner_id: str) -> TaskList | None:
    """The user's Inbox if it was made (and committed) before."""
    return uow.session.exec(_inbox_of(), params={"owner_id": owner_id}).first()


def find(
    uow: UnitOfWork, owner_id: str, ref: str, *, for_update: bool = False, now: datetime | None = None
) -> TaskList:
    """The user's list named ``ref`` (any case) or with id ``ref``; a clear error naming the
    user's lists when there is none (another user's list is indistinguishable from none)."""
    key = " ".join(ref.split()).lower()
    statement = select(TaskList).where(col(TaskList.owner_id) == owner_id)
    if key.isdigit() and int(key) <= MAX_ID:
        statement = statement.where(col(TaskList.id) == int(key))
    else:
        statement = statement.where(col(TaskList.name_key) == key)
    if for_update and uow.is_postgres:
        statement = statement.with_for_update()
    found = uow.session.exec(statement).first()
    if found is None:
        if key == INBOX.lower():
            return inbox(uow, owner_id, now or utc_now())
        names = ", ".join(f"'{n}'" for n in names_of(uow, owner_id)) or f"'{INBOX}'"
        raise InvalidInput(
            "list", f"There is no list '{ref}'; your lists are {names}. Create it first (edit_list)."
        )
    return found


def for_new_task(uow: UnitOfWork, owner_id: str, ref: str | None, now: datetime) -> TaskList:
    """Where a new (or moved) task goes: the list named, else the Inbox; not an archived list."""
    target = inbox(uow, owner_id, now) if ref is None else find(uow, owner_id, ref, now=now)
    if target.archived_at is not None:
        raise InvalidInput("list", f"The list '{target.name}' is archived; unarchive it first.")
    return target


def names_of(uow: UnitOfWork, owner_id: str) -> list[str]:
    statement = select(TaskList.name).where(col(TaskList.owner_id) == owner_id).order_by(col(TaskList.id))
    return list(uow.session.exec(statement))


def views(uow: UnitOfWork, owner_id: str, *, include_archived: bool) -> list[ListView]:
    """The user's lists, Inbox first, each with its count of open tasks."""
    statement = select(TaskList).where(col(TaskList.owner_id) == owner_id)
    if not include_archived:
        statement = statement.where(col(TaskList.archived_at).is_(None))
    rows = list(uow.session.exec(statement.order_by(col(TaskList.is_inbox).desc(), col(TaskList.id))))
    counts = dict(
        uow.session.exec(
            select(Task.list_id, func.count())
            .where(col(Task.owner_id) == owner_id, col(Task.completed).is_(False))
            .group_by(col(Task.list_id))
        ).all()
    )
    return [ListView.of(row, counts.get(row.id, 0)) for row in rows]


def tasks_in(uow: UnitOfWork, owner_id: str, list_id: int) -> list[Task]:
    """Every task of the list, locked (PostgreSQL), in id order."""
    statement = select(Task).where(col(Task.owner_id) == owner_id, col(Task.list_id) == list_id)
    statement = statement.order_by(col(Task.id))
    if uow.is_postgres:
        statement = statement.with_for_update()
    return list(uow.session.exec(statement))


@functools.cache
def _inbox_of() -> SelectOfScalar[TaskList]:
    return select(TaskList).where(
        col(TaskList.owner_id) == bindparam("owner_id"), col(TaskList.is_inbox).is_(True)
    )


@functools.cache
def _insert_inbox(dialect: str) -> Insert:
    table: Table = TaskList.__table__  # type: ignore[attr-defined]  # SQLModel's stubs omit __table__
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=["owner_id", "name_key"])
    return sqlite.insert(table).on_conflict_do_nothing(index_elements=["owner_id", "name_key"])
