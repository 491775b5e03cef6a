"""Event contracts: the versioned payloads on each topic and their CloudEvent envelope.

An outbox row becomes one CloudEvent per target topic (same id on every topic):

    for topic in target_topics(row):
        publisher.publish(topic, [cloud_event(row)], partition_key=row.user_id)

A consumer parses the ``data`` of what it receives with the model of its topic:

    event = TaskEvent.model_validate(delivery.data)   # raises ValidationError on poison

Each topic has a dead-letter topic ``<topic>-dlq``. Dapr writes there the event a consumer
dropped, as it was delivered; an outbox row for a dead-letter topic (a reminder delivery given
up, ``events.reminders.dead_letters``) is published the same way: its CloudEvent keeps the id of
the event it holds (``data["dead_letter"]["event_id"]``), so a replay is that event again and
its consumer knows what it already did with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from tasks.clock import as_utc
from tasks.events import (
    REMINDERS,
    SCHEMA_VERSION,
    TASK_EVENTS,
    TASK_UPDATES,
    ListData,
    ListEventType,
    TaskEventType,
)
from tasks.schemas import TaskView

SOURCE: Final = "todo-agent"
SPEC_VERSION: Final = "1.0"
CLOUDEVENT_CONTENT_TYPE: Final = "application/cloudevents+json"
NOTIFICATION_CREATED: Final = "todo.notification.created.v1"
DEAD_LETTER_SUFFIX: Final = "-dlq"
#: Topics a client-facing replay (WebSocket resume) reads from the outbox.
CLIENT_TOPICS: Final = (TASK_EVENTS, TASK_UPDATES)


class _Payload(BaseModel):
    model_config = ConfigDict(extra="allow")

    schema_version: int = SCHEMA_VERSION
    user_id: str = Field(min_length=1)


class TaskEvent(_Payload):
    """``task-events`` and ``task-updates`` payload (type ``todo.task.<event_type>.v1``).

    ``change_id`` (the write it belongs to, for undo) and ``batch_size`` (how many tasks a batch
    call changed) were added to version 1 as optional fields: older events parse without them."""

    event_type: TaskEventType
    task_id: int
    task_data: TaskView
    changes: dict[str, list[Any]] = Field(default_factory=dict)
    timestamp: datetime
    change_id: int | None = None
    batch_size: int | None = None


class ListEvent(_Payload):
    """``task-events`` and ``task-updates`` payload for a list (type ``todo.list.<event_type>.v1``):
    created, renamed, archived, unarchived, deleted, or restored by an undo. A deleted list's
    tasks each have their own task event (moved to the Inbox, or deleted)."""

    event_type: ListEventType
    list_id: int
    list_data: ListData
    changes: dict[str, list[Any]] = Field(default_factory=dict)
    timestamp: datetime
    change_id: int | None = None


class ReminderEvent(_Payload):
    """``reminders`` payload (type ``todo.reminder.due.v1``)."""

    task_id: int
    title: str
    due_at: datetime | None = None
    remind_at: datetime
    notification_type: Literal["reminder"] = "reminder"


class NotificationCreated(_Payload):
    """``task-updates`` payload written by the notifications part (``todo.notification.created.v1``)."""

    task_id: int | None = None
    title: str
    body: str = ""
    due_at: datetime | None = None
    remind_at: datetime | None = None
    notification_id: int | None = None


class OutboxRecord(Protocol):
    """What publishing reads of an outbox row: an ``OutboxEvent``, or the relay's lighter
    claimed row (``events.relay``: no ORM entity per row)."""

    @property
    def id(self) -> int | None: ...
    @property
    def topic(self) -> str: ...
    @property
    def event_type(self) -> str: ...
    @property
    def user_id(self) -> str: ...
    @property
    def task_id(self) -> int | None: ...
    @property
    def payload(self) -> dict[str, Any]: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def trace_context(self) -> str | None: ...


def target_topics(row: OutboxRecord) -> tuple[str, ...]:
    """``task-events`` rows go to services and clients; every other row to its own topic."""
    if row.topic == TASK_EVENTS:
        return (TASK_EVENTS, TASK_UPDATES)
    return (row.topic,)


def cloud_event(row: OutboxRecord) -> dict[str, Any]:
    """The CloudEvents 1.0 envelope of an outbox row; its id is the row id."""
    assert row.id is not None, "only committed outbox rows are published"
    event: dict[str, Any] = {
        "specversion": SPEC_VERSION,
        "id": _event_id(row),
        "source": SOURCE,
        "type": row.event_type,
        "time": as_utc(row.created_at).isoformat(),
        "datacontenttype": "application/json",
        "data": row.payload,
    }
    if row.task_id is not None:
        event["subject"] = str(row.task_id)
    if row.trace_context:
        # The writer's trace (Distributed Tracing extension). daprd keeps a CloudEvent's own
        # ``traceid`` when it publishes, and the subscriber's daprd continues ``traceparent``,
        # so the consumers' spans join the trace of the request that wrote the row.
        event["traceparent"] = event["traceid"] = row.trace_context
    return event


def _event_id(row: OutboxRecord) -> str:
    """The row id, but for a dead letter: the id of the event it holds (as Dapr's dead letters)."""
    if row.topic.endswith(DEAD_LETTER_SUFFIX):
        held = row.payload.get("dead_letter")
        if isinstance(held, dict) and held.get("event_id"):
            return str(held["event_id"])
    return str(row.id)


def dead_letter_key(event: Mapping[str, Any]) -> str:
    """What tells one dead letter from another: its event id, and for a delivery given up on one
    channel (``data["dead_letter"]["channel"]``) that channel too: an event may leave one per channel."""
    data = event.get("data")
    held = data.get("dead_letter") if isinstance(data, dict) else None
    channel = held.get("channel") if isinstance(held, dict) else None
    return f"{event.get('id')}/{channel}" if channel else str(event.get("id"))


def is_task_event(event_type: str) -> bool:
    return event_type.startswith("todo.task.")


def is_list_event(event_type: str) -> bool:
    return event_type.startswith("todo.list.")


__all__ = [
    "CLIENT_TOPICS",
    "DEAD_LETTER_SUFFIX",
    "NOTIFICATION_CREATED",
    "REMINDERS",
    "SOURCE",
    "TASK_EVENTS",
    "TASK_UPDATES",
    "ListEvent",
    "NotificationCreated",
    "OutboxRecord",
    "ReminderEvent",
    "TaskEvent",
    "cloud_event",
    "dead_letter_key",
    "is_list_event",
    "target_topics",
]
