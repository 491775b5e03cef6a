"""Delivering a due reminder to a person: in-app, by email, by webhook (subscriber of ``reminders``).

    subscription = reminders_subscription(container)   # topic reminders -> /events/reminders
    events.subscriber.mount(app, container, subscription)

Each channel's delivery is a ``Notification`` row keyed by (event id, channel) with its status,
so a redelivered event sends nothing that was already sent:

- ``in_app``: the row and a ``todo.notification.created.v1`` event (topic ``task-updates``, for
  the real-time hub on every API replica) commit together, once.
- ``email`` (when ``TODO_SMTP_HOST`` is set and the user saved an address): plain text over SMTP.
- ``webhook`` (when the user saved a URL): a JSON POST.

A transient failure (server unreachable, 4xx SMTP reply, HTTP 5xx/408/429) answers RETRY; a
permanent one (5xx SMTP reply, other HTTP 3xx/4xx) is recorded as failed and answers DROP, which
sends the event to ``reminders-dlq`` once no channel is left to retry, even when the give-up
came on an earlier delivery of the event than the last retry.

The webhook gets ``{"type": "reminder", "event_id", "user_id", "task_id", "title", "due_at",
"remind_at"}`` (times ISO 8601 in UTC).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Any, ClassVar, Final, Literal

import aiosmtplib
import httpx
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from events.ports import Delivery, Outcome, Subscription
from tasks.clock import as_utc, utc_now, zone
from tasks.events import REMINDERS, TASK_UPDATES, DomainEvent
from tasks.models import Notification
from tasks.unit_of_work import UnitOfWorkFactory
from todo_agent.bootstrap import Container
from todo_agent.settings import Settings

log = logging.getLogger(__name__)

CONSUMER: Final = "notifications"
ROUTE: Final = "/events/reminders"
Channel = Literal["in_app", "email", "webhook"]


class NotificationCreated(DomainEvent):
    """An in-app notification for a user (topic ``task-updates``; the hub pushes it)."""

    topic: ClassVar[str] = TASK_UPDATES
    notification_id: int
    task_id: int | None = None
    title: str
    body: str
    due_at: datetime | None = None
    remind_at: datetime | None = None
    timestamp: datetime

    @property
    def kind(self) -> str:
        return f"todo.notification.created.v{self.schema_version}"


class ReminderMessage(BaseModel):
    """The ``ReminderDue`` payload as the subscriber reads it."""

    user_id: str
    task_id: int
    title: str
    due_at: datetime | None = None
    remind_at: datetime


class DeliveryFailed(Exception):
    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


def describe_due(due_at: datetime | None, tz: str) -> str:
    """'Friday 8 May 2026, 20:00 (Europe/Berlin)' in the user's zone."""
    if due_at is None:
        return "no due time"
    local = as_utc(due_at).astimezone(zone(tz))
    return f"{local:%A} {local.day} {local:%B %Y, %H:%M} ({tz})"


def reminder_text(message: ReminderMessage, tz: str) -> str:
    lines = [f"Reminder: {message.title}", f"Due: {describe_due(message.due_at, tz)}"]
    local = as_utc(message.remind_at).astimezone(zone(tz))
    lines += ["", f"You asked to be reminded about this task at {local:%H:%M} ({tz})."]
    return "\n".join(lines) + "\n"


def reminder_email(message: ReminderMessage, *, tz: str, sender: str, to: str) -> EmailMessage:
    email = EmailMessage()
    email["Subject"] = f"Reminder: {message.title}"
    email["From"] = sender
    email["To"] = to
    email.set_content(reminder_text(message, tz))
    return email


async def send_email(settings: Settings, email: EmailMessage) -> None:
    assert settings.smtp_host is not None
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    try:
        await aiosmtplib.send(
            email, hostname=settings.smtp_host, port=settings.smtp_port,
            username=settings.smtp_username, password=password,
            start_tls=settings.smtp_starttls, timeout=20,
        )  # fmt: skip
    except aiosmtplib.SMTPResponseException as exc:
        raise DeliveryFailed(f"SMTP {exc.code}: {exc.message}", transient=exc.code < 500) from exc
    except aiosmtplib.SMTPRecipientsRefused as exc:
        codes = [e.code for e in exc.recipients]
        raise DeliveryFailed(f"recipients refused: {exc}", transient=all(c < 500 for c in codes)) from exc
    except (aiosmtplib.SMTPException, OSError) as exc:
        raise DeliveryFailed(f"SMTP server unreachable: {exc}", transient=True) from exc


async def post_webhook(url: str, body: dict[str, Any]) -> None:
    try:
        async with httpx.AsyncClient(timeout=10.0) as client:
            response = await client.post(url, json=body)
    except httpx.HTTPError as exc:
        raise DeliveryFailed(f"webhook unreachable: {exc}", transient=True) from exc
    if response.status_code >= 300:
        transient = response.status_code >= 500 or response.status_code in (408, 429)
        raise DeliveryFailed(f"webhook answered HTTP {response.status_code}", transient=transient)


# -- records ----------------------------------------------------------------------------------
def record_in_app(uow_factory: UnitOfWorkFactory, event_id: str, message: ReminderMessage, body: str) -> bool:
    """Write the in-app notification and its event, once; False if it was already there."""
    now = utc_now()
    with uow_factory() as uow:
        row = Notification(
            event_id=event_id, channel="in_app", user_id=message.user_id, task_id=message.task_id,
            title=message.title, body=body, due_at=message.due_at, remind_at=message.remind_at,
            status="sent", attempts=1, created_at=now,
        )  # fmt: skip
        uow.session.add(row)
        try:
            uow.session.flush()
        except IntegrityError:
            return False
        assert row.id is not None
        uow.record(
            NotificationCreated(
                user_id=message.user_id, task_id=message.task_id, notification_id=row.id,
                title=message.title, body=body, due_at=message.due_at, remind_at=message.remind_at,
                timestamp=now,
            )
        )  # fmt: skip
        uow.commit()
        return True


Claim = Literal["claimed", "sent", "failed", "taken"]


def claim(uow_factory: UnitOfWorkFactory, event_id: str, channel: Channel, message: ReminderMessage) -> Claim:
    """Start a delivery on ``channel``: ``claimed``; else how an earlier delivery ended (``sent``,
    or ``failed`` when it was given up), or ``taken`` by a concurrent delivery."""
    with uow_factory() as uow:
        found = uow.session.exec(
            select(Notification).where(Notification.event_id == event_id, Notification.channel == channel)
        ).first()
        if found is not None and found.status in ("sent", "failed"):
            return "sent" if found.status == "sent" else "failed"
        row = found or Notification(
            event_id=event_id, channel=channel, user_id=message.user_id, task_id=message.task_id,
            title=message.title, due_at=message.due_at, remind_at=message.remind_at,
        )  # fmt: skip
        row.status, row.attempts = "sending", row.attempts + 1
        uow.session.add(row)
        try:
            uow.commit()
        except IntegrityError:  # a concurrent delivery claimed it first
            return "taken"
        return "claimed"


def settle(
    uow_factory: UnitOfWorkFactory, event_id: str, channel: Channel, error: DeliveryFailed | None
) -> None:
    with uow_factory() as uow:
        row = uow.session.exec(
            select(Notification).where(Notification.event_id == event_id, Notification.channel == channel)
        ).one()
        if error is None:
            row.status, row.last_error = "sent", None
        else:
            row.status, row.last_error = ("retrying" if error.transient else "failed"), str(error)[:2000]
        uow.session.add(row)
        uow.commit()


# -- the subscriber ---------------------------------------------------------------------------
@dataclass
class ReminderNotifier:
    container: Container

    async def __call__(self, delivery: Delivery) -> Outcome:
        try:
            message = ReminderMessage.model_validate(delivery.data)
        except ValidationError as exc:
            log.error("reminder event %s is malformed, dropping it: %s", delivery.id, exc)
            return Outcome.DROP
        uow = self.container.uow
        profile = await asyncio.to_thread(self.container.profiles.get, message.user_id)
        tz = (await asyncio.to_thread(self.container.profiles.actor, message.user_id)).timezone
        text = reminder_text(message, tz)
        await asyncio.to_thread(record_in_app, uow, delivery.id, message, text)
        failures: list[DeliveryFailed] = []
        settings = self.container.settings
        if profile.email and settings.smtp_host:
            email = reminder_email(message, tz=tz, sender=settings.smtp_from, to=profile.email)
            await self._deliver(delivery.id, "email", message, lambda: send_email(settings, email), failures)
        if url := profile.webhook_url:
            body = {"type": "reminder", "event_id": delivery.id, **message.model_dump(mode="json")}
            await self._deliver(delivery.id, "webhook", message, lambda: post_webhook(url, body), failures)
        if any(f.transient for f in failures):
            return Outcome.RETRY
        return Outcome.DROP if failures else Outcome.SUCCESS

    async def _deliver(
        self, event_id: str, channel: Channel, message: ReminderMessage,
        send: Callable[[], Awaitable[None]],
        failures: list[DeliveryFailed],
    ) -> None:  # fmt: skip
        uow = self.container.uow
        claimed = await asyncio.to_thread(claim, uow, event_id, channel, message)
        if claimed == "failed":  # given up on an earlier delivery: the event still dead-letters
            failures.append(DeliveryFailed(f"{channel} delivery was given up earlier", transient=False))
        if claimed != "claimed":
            return  # nothing is sent twice
        error: DeliveryFailed | None = None
        try:
            await send()
        except DeliveryFailed as exc:
            error = exc
            failures.append(exc)
            log.warning("reminder %s via %s failed: %s", event_id, channel, exc)
        await asyncio.to_thread(settle, uow, event_id, channel, error)


def reminders_subscription(container: Container) -> Subscription:
    return Subscription(
        topic=REMINDERS, route=ROUTE, consumer=CONSUMER, handler=ReminderNotifier(container),
        dead_letter_topic=f"{REMINDERS}-dlq",
    )  # fmt: skip
