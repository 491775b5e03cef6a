"""Tables (SQLModel) and the public shapes of a task.

Timestamps are stored timezone-aware (``UTCDateTime`` makes SQLite behave like PostgreSQL).
Tags are stored as ``,a,b,`` so a tag filter is a portable ``LIKE '%,a,%'``.

The indexes on ``tasks`` follow the listing (``tasks.listing``): a user's tasks in its order
(``due_at IS NULL, due_at, id``), behind the status or not. Migration 0005 adds, on PostgreSQL
only, trigram GIN indexes for the tag filter and the text search (not declared here: SQLite
has no such index type).
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

    @property
    def tags(self) -> list[str]:
        return [t for t in self.tags_text.split(",") if t]

    @tags.setter
    def tags(self, values: list[str]) -> None:
        self.tags_text = "," + "".join(f"{t}," for t in values)


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
