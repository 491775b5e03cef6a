"""A reminder delivery given up becomes a dead letter on ``reminders-dlq``, through the outbox.

    uow.record(given_up(claim, error=last_error, now=now))   # beside the update to ``failed``
    held = replayed(delivery.data, delivery.id)                # a replay: the give-up it carries

Whoever gives a delivery up (``deliveries.settle``: a permanent failure, or a transient one on
the last attempt; ``deliveries.claim_due``: attempts used up by a sender that stopped) records
this event in the transaction that sets the row ``failed``, and only if that compare-and-set
update changed the row: of two senders or replicas racing to give the same delivery up, one
writes the dead letter. The relay publishes it like every outbox row, so a process that stops
right after the commit loses nothing.

The dead letter is the reminder event again (``events.contracts``: same CloudEvent id, type
``todo.reminder.due.v1``, the reminder's fields, partition key the user) with what was given up
in ``data["dead_letter"]``: ``event_id``, ``consumer``, ``channel``, ``error``, ``attempts`` and
``given_up_at``. ``todo-agent events dlq list --topic reminders`` shows it; ``dlq replay`` puts it
back on ``reminders``, where the subscriber makes one more attempt on that channel only
(``replayed``; nothing else of the event is sent again).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Final, Literal, Protocol

from pydantic import BaseModel, ValidationError

from events.contracts import DEAD_LETTER_SUFFIX
from tasks.events import REMINDERS, DomainEvent

#: The consumer that gives deliveries up (the ``reminders`` subscriber).
CONSUMER: Final = "notifications"
TOPIC: Final = f"{REMINDERS}{DEAD_LETTER_SUFFIX}"


class GivenUp(BaseModel):
    """What was given up: one channel's delivery of one reminder event, after how many attempts."""

    event_id: str
    consumer: str = CONSUMER
    channel: str
    error: str
    attempts: int
    given_up_at: datetime


class ReminderDeadLetter(DomainEvent):
    """The reminder event whose delivery on one channel was given up (topic ``reminders-dlq``)."""

    topic: ClassVar[str] = TOPIC
    title: str
    due_at: datetime | None = None
    remind_at: datetime | None = None
    notification_type: Literal["reminder"] = "reminder"
    dead_letter: GivenUp

    @property
    def kind(self) -> str:
        return f"todo.reminder.due.v{self.schema_version}"  # the type of the event it holds


class Delivery(Protocol):
    """What a dead letter reads of a delivery: a ``Notification`` row or a ``deliveries.Claim``."""

    @property
    def event_id(self) -> str: ...
    @property
    def channel(self) -> str: ...
    @property
    def attempts(self) -> int: ...
    @property
    def user_id(self) -> str: ...
    @property
    def task_id(self) -> int | None: ...
    @property
    def title(self) -> str: ...
    @property
    def due_at(self) -> datetime | None: ...
    @property
    def remind_at(self) -> datetime | None: ...


def given_up(delivery: Delivery, *, error: str, now: datetime) -> ReminderDeadLetter:
    """The dead letter of ``delivery``, given up after its ``attempts`` with ``error``."""
    held = GivenUp(event_id=delivery.event_id, channel=delivery.channel, error=error,
                   attempts=delivery.attempts, given_up_at=now)  # fmt: skip
    return ReminderDeadLetter(
        user_id=delivery.user_id, task_id=delivery.task_id, title=delivery.title,
        due_at=delivery.due_at, remind_at=delivery.remind_at, dead_letter=held,
    )  # fmt: skip


def replayed(data: dict[str, Any], event_id: str) -> GivenUp | None:
    """The give-up a replayed dead letter of this consumer carries (None: a reminder event)."""
    try:
        held = GivenUp.model_validate(data.get("dead_letter"))
    except ValidationError:
        return None
    return held if held.consumer == CONSUMER and held.event_id == event_id else None
