"""Tables (SQLModel) and the public shapes of a task.

Timestamps are stored timezone-aware (``UTCDateTime`` makes SQLite behave like PostgreSQL).
Tags are stored as ``,a,b,`` so a tag filter is a portable ``LIKE '%,a,%'``.

The indexes on ``tasks`` follow the listing (``tasks.listing``): a user's tasks in its order
(``due_at IS NULL, due_at, id``), behind the status or not. Migration 0005 adds, on PostgreSQL
only, trigram GIN indexes for the tag filter and the text search (not declared here: SQLite
has no such index type).

Migration 0006 adds lists (``task_lists``: every user has an Inbox, each task belongs to one list)
and subtasks (``tasks.parent_id``); tasks also carry ``completed_at`` for the completed history.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.types import TypeDecorator
from sqlmodel import Column, Field, SQLModel

from tasks.clock import as_utc, utc_now


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp that comes back aware (UTC) from every database."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else as_utc(value)


def _ts(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


class Priority(StrEnum):
    NONE = "none"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class RepeatFrom(StrEnum):
    DUE = "due"
    COMPLETION = "completion"


#: The first key of the listing's order: dated tasks (false) before undated ones (true).
_UNDATED = text("(due_at IS NULL)")


class Task(SQLModel, table=True):
    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_owner_status_order", "owner_id", "completed", _UNDATED, "due_at", "id"),
        Index("ix_tasks_owner_order", "owner_id", _UNDATED, "due_at", "id"),
        UniqueConstraint("previous_occurrence_id", name="uq_tasks_previous_occurrence"),
        Index("ix_tasks_owner_list_order", "owner_id", "list_id", _UNDATED, "due_at", "id"),
        Index("ix_tasks_owner_completed_at", "owner_id", "completed_at"),
        Index("ix_tasks_parent_id", "parent_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    owner_id: str = Field(sa_column=Column(String(200), nullable=False))
    title: str = Field(sa_column=Column(String(200), nullable=False))
    description: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    completed: bool = Field(default=False)
    completed_at: datetime | None = _ts()
    priority: str = Field(default=Priority.NONE.value, max_length=10)
    tags_text: str = Field(default=",", sa_column=Column(Text, nullable=False, default=","))
    due_at: datetime | None = _ts()
    remind_at: datetime | None = _ts(index=True)
    remind_before_minutes: int | None = None
    reminder_state: str | None = Field(default=None, max_length=20)
    recurrence: str | None = Field(default=None, sa_column=Column(String(500), nullable=True))
    repeat_from: str = Field(default=RepeatFrom.DUE.value, max_length=12)
    recurrence_anchor: datetime | None = _ts()
    timezone: str = Field(default="UTC", max_length=64)
    occurrence: int = Field(default=1)
    previous_occurrence_id: int | None = Field(default=None)
    created_at: datetime | None = _ts(nullable=False)
    updated_at: datetime | None = _ts(nullable=False)
    version: int = Field(default=1)
    #: The list the task belongs to (``task_lists.id``); a subtask is always in its parent's list.
    list_id: int | None = Field(default=None)
    #: The task this one is a subtask of (``tasks.parent_id``), at most ``MAX_DEPTH`` levels deep.
    parent_id: int | None = Field(default=None)

    @property
    def tags(self) -> list[str]:
        return [t for t in self.tags_text.split(",") if t]

    @tags.setter
    def tags(self, values: list[str]) -> None:
        self.tags_text = "," + "".join(f"{t}," for t in values)


class TaskList(SQLModel, table=True):
    """A list (project) of one user's tasks. Every user has one Inbox (``is_inbox``), made when
    first needed; it cannot be renamed, archived or deleted. ``name_key`` (the name in lower case)
    is unique per user, so two lists never differ only by case."""

    __tablename__ = "task_lists"
    __table_args__ = (UniqueConstraint("owner_id", "name_key", name="uq_task_lists_owner_name"),)

    id: int | None = Field(default=None, primary_key=True)
    owner_id: str = Field(sa_column=Column(String(200), nullable=False))
    name: str = Field(sa_column=Column(String(100), nullable=False))
    name_key: str = Field(sa_column=Column(String(100), nullable=False))
    is_inbox: bool = Field(default=False)
    archived_at: datetime | None = _ts()
    created_at: datetime | None = _ts(nullable=False)
    updated_at: datetime | None = _ts(nullable=False)
    version: int = Field(default=1)


class ChangeRecord(SQLModel, table=True):
    """One write of one user (a call of a write tool or route), with every row it changed as it
    was before and after (``entries``: ``{"table", "id", "before", "after"}``, rows as JSON),
    so ``undo`` can revert it exactly. ``undoes_id`` names the change an undo reverted;
    ``undone_by_id`` the undo that reverted this one (migration 0007)."""

    __tablename__ = "changes"
    __table_args__ = (Index("ix_changes_owner_id", "owner_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    owner_id: str = Field(sa_column=Column(String(200), nullable=False))
    action: str = Field(max_length=40)
    summary: str = Field(sa_column=Column(Text, nullable=False))
    entries: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    undoes_id: int | None = None
    undone_by_id: int | None = None
    created_at: datetime | None = _ts(nullable=False)


class IdempotencyKey(SQLModel, table=True):
    """The first result of a write sent with an idempotency key (per user), kept at least
    ``KEEP_KEYS`` (``tasks.idempotency``) so a retry returns it instead of writing again."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("ix_idempotency_keys_created_at", "created_at"),)

    owner_id: str = Field(sa_column=Column(String(200), primary_key=True))
    key: str = Field(sa_column=Column(String(200), primary_key=True))
    request_hash: str = Field(sa_column=Column(String(64), nullable=False))
    response: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime | None = _ts(nullable=False)


OUTBOX_PENDING = "published_at IS NULL AND failed_at IS NULL"


class OutboxEvent(SQLModel, table=True):
    """A domain event waiting to be published; written in the same transaction as its change."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_pending", "published_at", "id"),
        # Pending rows by user: the relay asks whether a user has an earlier row still to go.
        Index(
            "ix_outbox_pending_user",
            "user_id",
            "id",
            postgresql_where=text(OUTBOX_PENDING),
            sqlite_where=text(OUTBOX_PENDING),
        ),
    )

    id: int | None = Field(
        default=None,
        sa_column=Column(
            BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
    )
    topic: str = Field(max_length=100)
    event_type: str = Field(max_length=100)
    user_id: str = Field(max_length=200)
    task_id: int | None = None
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utc_now, sa_column=Column(UTCDateTime(), nullable=False))
    published_at: datetime | None = _ts()
    #: Set when the bus refused the row for good (``last_error`` says why): no more retries.
    failed_at: datetime | None = _ts()
    attempts: int = Field(default=0)
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    #: The writer's W3C ``traceparent`` when tracing was on: the relay and the consumers
    #: continue that trace (``observability.tracing``); None otherwise.
    trace_context: str | None = Field(default=None, sa_column=Column(String(128), nullable=True))


class UserSettings(SQLModel, table=True):
    __tablename__ = "user_settings"

    user_id: str = Field(sa_column=Column(String(200), primary_key=True))
    timezone: str | None = Field(default=None, max_length=64)
    email: str | None = Field(default=None, max_length=320)
    webhook_url: str | None = Field(default=None, max_length=2000)
    updated_at: datetime | None = _ts()


class ProcessedEvent(SQLModel, table=True):
    """Event ids a consumer has applied, written in the same transaction as the effect."""

    __tablename__ = "processed_events"

    consumer: str = Field(sa_column=Column(String(100), primary_key=True))
    event_id: str = Field(sa_column=Column(String(200), primary_key=True))
    processed_at: datetime = Field(default_factory=utc_now, sa_column=Column(UTCDateTime(), nullable=False))


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(sa_column=Column(String(200), nullable=False, unique=True))
    user_id: str = Field(sa_column=Column(String(200), nullable=False, index=True))
    task_id: int | None = None
    action: str = Field(max_length=40)
    summary: str = Field(sa_column=Column(Text, nullable=False))
    before: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    after: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    occurred_at: datetime | None = _ts(nullable=False)
    recorded_at: datetime = Field(default_factory=utc_now, sa_column=Column(UTCDateTime(), nullable=False))


class Notification(SQLModel, table=True):
    """One delivery of a reminder through one channel, with its status.

    ``status``: ``sending`` (claimed by a sender until ``next_attempt_at``), ``retrying`` (a
    transient failure; due again at ``next_attempt_at``), ``sent`` or ``failed`` (final).
    """

    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("event_id", "channel", name="uq_notifications_event_channel"),
        Index("ix_notifications_due", "status", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=200)
    channel: str = Field(max_length=20)
    user_id: str = Field(sa_column=Column(String(200), nullable=False, index=True))
    task_id: int | None = None
    title: str = Field(sa_column=Column(Text, nullable=False))
    body: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    due_at: datetime | None = _ts()
    remind_at: datetime | None = _ts()
    status: str = Field(default="pending", max_length=20)
    attempts: int = Field(default=0)
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    #: ``retrying``: when the next attempt is due; ``sending``: when the sender's claim expires.
    next_attempt_at: datetime | None = _ts()
    created_at: datetime = Field(default_factory=utc_now, sa_column=Column(UTCDateTime(), nullable=False))
    read_at: datetime | None = _ts()


class Conversation(SQLModel, table=True):
    """The index of a user's conversations; the messages live in the session store."""

    __tablename__ = "conversations"

    id: str = Field(sa_column=Column(String(64), primary_key=True))
    user_id: str = Field(sa_column=Column(String(200), nullable=False, index=True))
    title: str = Field(default="New conversation", max_length=200)
    created_at: datetime = Field(default_factory=utc_now, sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(default_factory=utc_now, sa_column=Column(UTCDateTime(), nullable=False))
