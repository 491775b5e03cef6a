"""Domain events raised by the use cases and written to the outbox by the unit of work.

Payload shapes are versioned (``schema_version``); ``events.contracts`` wraps them as CloudEvents.
Task events of schema 1 gained optional fields (``change_id``, ``batch_size``; ``task_data``'s
``list_id`` and ``parent_id``): additions only, so older events still parse and older consumers
ignore them. List changes are events of their own (``ListChanged``, ``todo.list.<kind>.v1``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Final, Literal

from pydantic import BaseModel, Field

from tasks.schemas import TaskView

TASK_EVENTS: Final = "task-events"
TASK_UPDATES: Final = "task-updates"
REMINDERS: Final = "reminders"
SCHEMA_VERSION: Final = 1

TaskEventType = Literal["created", "updated", "completed", "uncompleted", "deleted"]
ListEventType = Literal["created", "renamed", "archived", "unarchived", "deleted", "restored"]


class DomainEvent(BaseModel):
    """Base class: ``topic`` names the outbox topic, ``event_type`` the kind of event."""

    topic: ClassVar[str]
    schema_version: int = SCHEMA_VERSION
    user_id: str
    task_id: int | None = None

    @property
    def kind(self) -> str:
        """The CloudEvent type, e.g. ``todo.task.completed.v1``; stored as the outbox event_type."""
        raise NotImplementedError


class TaskChanged(DomainEvent):
    """A task was created, updated, completed, reopened or deleted (topic ``task-events``).

    The relay publishes it to ``task-events`` (services) and ``task-updates`` (clients).
    """

    topic: ClassVar[str] = TASK_EVENTS
    event_type: TaskEventType
    task_id: int
    task_data: TaskView
    changes: dict[str, list[Any]] = Field(
        default_factory=dict, description="field -> [before, after] for updates"
    )
    timestamp: datetime
    change_id: int | None = Field(
        default=None, description="The write this event belongs to (one per call; undo takes it)."
    )
    batch_size: int | None = Field(
        default=None, description="For a batch call: how many tasks it changed in all."
    )

    @property
    def kind(self) -> str:
        return f"todo.task.{self.event_type}.v{self.schema_version}"


class ListData(BaseModel):
    """A list as its events carry it."""

    id: int
    name: str
    is_inbox: bool = False
    archived: bool = False
    version: int = 1


class ListChanged(DomainEvent):
    """A list was created, renamed, archived, unarchived, deleted or restored by an undo (topic
    ``task-events``; ``task_id`` is None). Deleting a list also records one ``TaskChanged`` per
    task it moved to the Inbox or deleted with it."""

    topic: ClassVar[str] = TASK_EVENTS
    event_type: ListEventType
    list_id: int
    list_data: ListData
    changes: dict[str, list[Any]] = Field(default_factory=dict)
    timestamp: datetime
    change_id: int | None = None

    @property
    def kind(self) -> str:
        return f"todo.list.{self.event_type}.v{self.schema_version}"


class ReminderDue(DomainEvent):
    """A reminder's time has come for a task that is still open (topic ``reminders``)."""

    topic: ClassVar[str] = REMINDERS
    task_id: int
    title: str
    due_at: datetime | None = None
    remind_at: datetime
    notification_type: Literal["reminder"] = "reminder"
    timestamp: datetime

    @property
    def kind(self) -> str:
        return f"todo.reminder.due.v{self.schema_version}"
