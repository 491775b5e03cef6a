"""Delivering a due reminder to a person: in-app, by email, by webhook (subscriber of ``reminders``).

    notifier = ReminderNotifier(uow, profiles, settings, retrier=retrier)
    subscription = reminders_subscription(notifier)    # topic reminders -> /events/reminders

Each channel's delivery is a ``Notification`` row keyed by (event id, channel) with its status
(see ``deliveries``), so a redelivered event sends nothing that was already tried:

- ``in_app``: the row and a ``todo.notification.created.v1`` event (topic ``task-updates``, for
  the real-time hub on every API replica) commit together, once.
- ``email`` (when ``TODO_SMTP_HOST`` is set and the user saved an address): plain text over SMTP.
- ``webhook`` (when the user saved a URL): a JSON POST, only to an address ``tasks.webhooks``
  allows when the attempt is made (public, or in the deployment's allow-list), connected to
  that checked address, without following redirects. A URL that resolves inside now is a
  permanent failure; one that does not resolve is retried.

The subscriber makes one attempt per channel, all channels at once, and moves on: Kafka
delivers a partition in order, so an event the subscriber held (or had redelivered) would hold
every other user's reminders behind it. A transient failure (server unreachable, 4xx SMTP reply,
HTTP 5xx/408/429) is recorded ``retrying`` and the event answers SUCCESS; the retrier
(``retrier``) tries that channel again later with backoff, and marks it ``failed`` after
``TODO_NOTIFY_MAX_ATTEMPTS`` attempts. An attempt still running after ``FIRST_ATTEMPT_WAIT``
(a webhook that hangs) is left to finish under its lease while the event answers SUCCESS; if
the process stops first, the lease expires and the retrier sends it.

A delivery given up — a permanent failure (5xx SMTP reply, other HTTP 3xx/4xx) on any attempt,
or ``TODO_NOTIFY_MAX_ATTEMPTS`` used up — is recorded ``failed`` and, in the same transaction,
written to the outbox as a dead letter for ``reminders-dlq`` (``dead_letters``: the reminder
event with the channel and its last error), once per give-up however many replicas race to
give it up. So it does not matter whether the event was still being answered (a first attempt)
or acknowledged long before (the retrier, or a first attempt that outlasted the wait): the
event answers SUCCESS, its other channels are delivered and retried, and the relay publishes
the dead letter (``todo-agent events dlq list --topic reminders`` shows it). A redelivered
event sends nothing again and writes no second dead letter. A replayed dead letter (``dlq
replay``) is that event with ``data["dead_letter"]``: it makes one more attempt on the channel
it names, if that delivery is still failed as the dead letter left it (``deliveries.reopen``;
the attempt counts on, so a transient failure is retried only while attempts remain), and
sends nothing else again. Only a malformed event answers DROP (Dapr dead-letters it).

Email and webhook go to the address and URL the user has saved when each attempt is made, so a
corrected webhook URL gets the retries. The webhook gets ``{"type": "reminder", "event_id",
"user_id", "task_id", "title", "due_at", "remind_at"}`` (times ISO 8601 in UTC), the same body on
every attempt.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any, ClassVar, Final, Protocol

import aiosmtplib
import httpx
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import IntegrityError

from events.ports import Delivery, Outcome, Subscription
from events.reminders import dead_letters
from events.reminders.dead_letters import GivenUp, replayed
from events.reminders.deliveries import (
    Begun,
    Channel,
    Claim,
    DeliveryFailed,
    NotifySettings,
    RetryPolicy,
    Status,
    begin,
    reopen,
    settle,
)
from tasks.clock import as_utc, utc_now, zone
from tasks.errors import InvalidInput
from tasks.events import REMINDERS, TASK_UPDATES, DomainEvent
from tasks.models import Notification
from tasks.profiles import Profiles
from tasks.unit_of_work import UnitOfWorkFactory
from tasks.webhooks import UnresolvableHost, WebhookPolicy, WebhookTarget

log = logging.getLogger(__name__)

CONSUMER: Final = dead_letters.CONSUMER
ROUTE: Final = "/events/reminders"
#: How long the subscriber waits for its first attempts before it answers and moves on.
FIRST_ATTEMPT_WAIT: Final = timedelta(seconds=2)


class Retries(Protocol):
    """What the subscriber asks of the retrier."""

    @property
    def running(self) -> bool:
        """Between ``start`` and ``aclose`` (``retrier.notification_retries``)."""

    def wake(self) -> None:
        """A delivery was recorded ``retrying``: look at what is due again."""

    def adopt(self, attempt: asyncio.Task[Any]) -> None:
        """Keep an attempt that is still running when the event is answered."""


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


async def send_email(settings: NotifySettings, email: EmailMessage) -> None:
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


async def post_webhook(url: str, body: dict[str, Any], policy: WebhookPolicy | None = None) -> None:
    """POST ``body`` to ``url`` if ``policy`` allows where it resolves to now (see
    ``tasks.webhooks``). The connection goes to the address that was checked, not to a second
    lookup's answer (a name that changes between check and connect cannot reach an internal
    address), and a redirect is not followed: a 3xx answer is a failed delivery."""
    target = await _checked_target(url, policy or WebhookPolicy())
    pinned = httpx.URL(url).copy_with(host=target.addresses[0])
    headers = {"Host": httpx.URL(url).netloc.decode("ascii")}
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    try:
        async with httpx.AsyncClient(timeout=10.0, follow_redirects=False) as client:
            response = await client.post(pinned, json=body, headers=headers, extensions=extensions)
    except httpx.HTTPError as exc:
        raise DeliveryFailed(f"webhook unreachable: {exc}", transient=True) from exc
    if response.status_code >= 300:
        transient = response.status_code >= 500 or response.status_code in (408, 429)
        raise DeliveryFailed(f"webhook answered HTTP {response.status_code}", transient=transient)


async def _checked_target(url: str, policy: WebhookPolicy) -> WebhookTarget:
    try:
        return await asyncio.to_thread(policy.resolve, url)
    except UnresolvableHost as exc:  # DNS may answer again later
        raise DeliveryFailed(f"webhook not sent: {exc.message}", transient=True) from exc
    except InvalidInput as exc:
        raise DeliveryFailed(f"webhook refused: {exc.message}", transient=False) from exc


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


@dataclass(frozen=True)
class Recipient:
    """Where a user's reminders go, read again for every attempt."""

    timezone: str
    email: str | None
    webhook_url: str | None


async def recipient_of(profiles: Profiles, user_id: str) -> Recipient:
    profile = await asyncio.to_thread(profiles.get, user_id)
    tz = (await asyncio.to_thread(profiles.actor, user_id)).timezone
    return Recipient(timezone=tz, email=profile.email, webhook_url=profile.webhook_url)


def channels_for(recipient: Recipient, settings: NotifySettings) -> list[Channel]:
    """The channels besides in-app that a reminder goes to."""
    channels: list[Channel] = []
    if recipient.email and settings.smtp_host:
        channels.append("email")
    if recipient.webhook_url:
        channels.append("webhook")
    return channels


def webhook_body(event_id: str, message: ReminderMessage) -> dict[str, Any]:
    return {"type": "reminder", "event_id": event_id, **message.model_dump(mode="json")}


def message_of(claim: Claim) -> ReminderMessage:
    """The reminder a claimed delivery carries (its row keeps the event's fields)."""
    try:
        return ReminderMessage(
            user_id=claim.user_id, task_id=claim.task_id, title=claim.title,  # type: ignore[arg-type]
            due_at=claim.due_at, remind_at=claim.remind_at,  # type: ignore[arg-type]
        )  # fmt: skip
    except ValidationError as exc:
        raise DeliveryFailed(f"the delivery record is incomplete: {exc}", transient=False) from exc


async def send(
    channel: Channel, settings: NotifySettings, recipient: Recipient, event_id: str, message: ReminderMessage
) -> None:
    """One attempt on ``channel``; raises ``DeliveryFailed``."""
    if channel == "email":
        if not (recipient.email and settings.smtp_host):
            raise DeliveryFailed("email is no longer configured for this user", transient=False)
        to, tz = recipient.email, recipient.timezone
        await send_email(settings, reminder_email(message, tz=tz, sender=settings.smtp_from, to=to))
    elif channel == "webhook":
        if not recipient.webhook_url:
            raise DeliveryFailed("the user no longer has a webhook", transient=False)
        policy = settings.webhook_policy
        await post_webhook(recipient.webhook_url, webhook_body(event_id, message), policy)
    else:
        raise DeliveryFailed(f"channel {channel} is not sent by a sender", transient=False)


async def attempt(
    uow: UnitOfWorkFactory, claim: Claim, policy: RetryPolicy, send_it: Callable[[], Awaitable[None]],
    *, clock: Callable[[], datetime] = utc_now,
) -> Status:  # fmt: skip
    """Make the claimed attempt (``send_it()``) and record how it ended."""
    error: DeliveryFailed | None = None
    try:
        await send_it()
    except DeliveryFailed as exc:
        error = exc
        log.warning("reminder %s via %s, attempt %d failed: %s", claim.event_id, claim.channel,
                    claim.attempts, exc)  # fmt: skip
    return await asyncio.to_thread(settle, uow, claim, error, now=clock(), policy=policy)


# -- the subscriber ---------------------------------------------------------------------------
@dataclass
class ReminderNotifier:
    """The ``reminders`` consumer: the in-app notification, then one attempt per channel; a
    running ``retrier`` takes over attempts that fail or outlast ``wait``."""

    uow: UnitOfWorkFactory
    profiles: Profiles
    settings: NotifySettings
    retrier: Retries | None = None
    wait: timedelta = FIRST_ATTEMPT_WAIT

    async def __call__(self, delivery: Delivery) -> Outcome:
        try:
            message = ReminderMessage.model_validate(delivery.data)
        except ValidationError as exc:
            log.error("reminder event %s is malformed, dropping it: %s", delivery.id, exc)
            return Outcome.DROP
        recipient = await recipient_of(self.profiles, message.user_id)
        text = reminder_text(message, recipient.timezone)
        await asyncio.to_thread(record_in_app, self.uow, delivery.id, message, text)
        channels = channels_for(recipient, self.settings)
        held = replayed(delivery.data, delivery.id)
        if held is not None and held.channel not in channels:
            log.warning("dead letter of reminder %s replayed, but %s is no longer configured for %s",
                        delivery.id, held.channel, message.user_id)  # fmt: skip
        await self._first_attempts(
            [
                asyncio.create_task(
                    self._first(delivery.id, ch, message, recipient, held), name=f"{delivery.id}/{ch}"
                )
                for ch in channels
            ]
        )
        return Outcome.SUCCESS  # a delivery given up has its own dead letter (``dead_letters``)

    async def _first(
        self, event_id: str, channel: Channel, message: ReminderMessage, to: Recipient,
        held: GivenUp | None = None,
    ) -> Status:  # fmt: skip
        """The one attempt the subscriber makes on ``channel``; a redelivered event makes none,
        a replayed dead letter (``held``) one on the channel it gave up."""
        row = Notification(
            event_id=event_id, channel=channel, user_id=message.user_id, task_id=message.task_id,
            title=message.title, due_at=message.due_at, remind_at=message.remind_at,
        )  # fmt: skip
        policy, uow = RetryPolicy.from_settings(self.settings), self.uow
        started: Begun = await asyncio.to_thread(begin, uow, row, now=utc_now(), lease=policy.lease)
        claim = started.claim
        if claim is None and started.earlier == "failed" and held is not None and held.channel == channel:
            claim = await asyncio.to_thread(reopen, uow, held, now=utc_now(), lease=policy.lease)
            if claim is not None:
                log.info("reminder %s via %s: its dead letter was replayed, attempt %d", event_id,
                         channel, claim.attempts)  # fmt: skip
        if claim is None:
            return started.earlier or "sending"
        settings = self.settings
        return await attempt(uow, claim, policy, lambda: send(channel, settings, to, event_id, message))

    async def _first_attempts(self, attempts: list[asyncio.Task[Status]]) -> list[Status]:
        retrier = self.retrier if self.retrier is not None and self.retrier.running else None
        if retrier is None or not attempts:  # no retrier running here: wait for every attempt
            return list(await asyncio.gather(*attempts))
        done, running = await asyncio.wait(attempts, timeout=self.wait.total_seconds())
        for task in running:
            log.warning("reminder delivery %s is still running after %s; it finishes on its own",
                        task.get_name(), self.wait)  # fmt: skip
            retrier.adopt(task)
        errors = [error for task in done if (error := task.exception()) is not None]
        if errors:
            raise errors[0]  # the subscriber answers RETRY: nothing could be recorded
        ended = [task.result() for task in done]
        if "retrying" in ended:
            retrier.wake()
        return ended


def reminders_subscription(notifier: ReminderNotifier) -> Subscription:
    return Subscription(
        topic=REMINDERS, route=ROUTE, consumer=CONSUMER, handler=notifier,
        dead_letter_topic=dead_letters.TOPIC,
    )  # fmt: skip
