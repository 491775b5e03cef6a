"""A reminder's delivery on one channel: who sends it, when it is tried again, how it ended.

    policy = RetryPolicy.from_settings(settings)
    started = begin(uow_factory, row, now=now, lease=policy.lease)   # the subscriber's one attempt
    claims = claim_due(uow_factory, now=now, policy=policy)          # the retrier's later attempts
    claim = reopen(uow_factory, held, now=now, lease=policy.lease)   # a replayed dead letter's
    status = settle(uow_factory, claim, error, now=now, policy=policy)

Each delivery is one ``Notification`` row per (event, channel):

    sending --sent--> sent
       |--permanent failure, or a transient one at the attempt limit--> failed (+ dead letter)
       '--transient failure--> retrying --at next_attempt_at--> sending (one more attempt)
    failed --its dead letter replayed (reopen)--> sending (one more attempt)

A sender owns a ``sending`` row until its ``next_attempt_at`` (the lease): the row of a sender
that died is due again once the lease has expired. Claims compare and set ``attempts`` (and lock
with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so replicas claim different rows); a settle whose
claim was taken over meanwhile changes nothing. The update that gives a delivery up writes its
dead letter (``dead_letters``) in the same transaction, only if it changed the row: one per give-up.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal, Protocol, Self

from pydantic import SecretStr
from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from events.reminders.dead_letters import GivenUp, given_up
from tasks.clock import as_utc
from tasks.models import Notification
from tasks.unit_of_work import UnitOfWorkFactory
from tasks.webhooks import WebhookPolicy

log = logging.getLogger(__name__)

Channel = Literal["in_app", "email", "webhook"]
Status = Literal["sending", "retrying", "sent", "failed"]
#: How long a sender owns a claimed delivery; longer than any send may take (SMTP: 20 s).
LEASE: Final = timedelta(seconds=60)
DUE_STATES: Final = ("retrying", "sending")


class NotifySettings(Protocol):
    """The settings reminder deliveries read (``todo_agent.settings.Settings`` has them)."""

    @property
    def smtp_host(self) -> str | None: ...
    @property
    def smtp_port(self) -> int: ...
    @property
    def smtp_username(self) -> str | None: ...
    @property
    def smtp_password(self) -> SecretStr | None: ...
    @property
    def smtp_from(self) -> str: ...
    @property
    def smtp_starttls(self) -> bool: ...
    @property
    def webhook_policy(self) -> WebhookPolicy: ...
    @property
    def notify_max_attempts(self) -> int: ...
    @property
    def notify_retry_base_seconds(self) -> float: ...
    @property
    def notify_retry_max_seconds(self) -> float: ...


class DeliveryFailed(Exception):
    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts per delivery, and the capped exponential backoff with jitter between them."""

    max_attempts: int = 8
    base: timedelta = timedelta(seconds=5)
    cap: timedelta = timedelta(minutes=15)
    lease: timedelta = LEASE

    @classmethod
    def from_settings(cls, settings: NotifySettings) -> Self:
        return cls(
            max_attempts=settings.notify_max_attempts,
            base=timedelta(seconds=settings.notify_retry_base_seconds),
            cap=timedelta(seconds=settings.notify_retry_max_seconds),
        )

    def backoff(self, attempts: int, *, rng: Callable[[], float] = random.random) -> timedelta:
        """The wait after the ``attempts``-th attempt: ``base * 2**(attempts - 1)`` up to ``cap``,
        of which a random part of the upper half (so deliveries that failed together spread out)."""
        doubled = self.base.total_seconds() * 2.0 ** min(max(attempts - 1, 0), 64)
        ceiling = min(self.cap.total_seconds(), doubled)
        return timedelta(seconds=ceiling / 2 + ceiling / 2 * rng())


@dataclass(frozen=True)
class Claim:
    """A delivery a sender owns until its lease expires; ``attempts`` counts this attempt."""

    id: int
    event_id: str
    channel: Channel
    attempts: int
    user_id: str
    task_id: int | None
    title: str
    due_at: datetime | None
    remind_at: datetime | None

    @classmethod
    def of(cls, row: Notification, attempts: int) -> Self:
        assert row.id is not None
        return cls(
            id=row.id, event_id=row.event_id, channel=row.channel, attempts=attempts,  # type: ignore[arg-type]
            user_id=row.user_id, task_id=row.task_id, title=row.title, due_at=row.due_at,
            remind_at=row.remind_at,
        )  # fmt: skip


@dataclass(frozen=True)
class Begun:
    """The subscriber's start on a channel: its claim, or how an earlier delivery of the event
    left the channel (then nothing is sent: every later attempt is the retrier's)."""

    claim: Claim | None
    earlier: Status | None = None


def begin(uow_factory: UnitOfWorkFactory, row: Notification, *, now: datetime, lease: timedelta) -> Begun:
    """Insert ``row`` (a new delivery) claimed for its first attempt, unless the event's delivery
    on that channel exists already (a redelivered event)."""
    with uow_factory() as uow:
        found = uow.session.exec(
            select(Notification.status).where(
                Notification.event_id == row.event_id, Notification.channel == row.channel
            )
        ).first()
        if found is not None:
            return Begun(None, found)  # type: ignore[arg-type]
        row.status, row.attempts, row.next_attempt_at, row.created_at = "sending", 1, now + lease, now
        uow.session.add(row)
        try:
            uow.commit()
        except IntegrityError:  # a concurrent delivery of the same event inserted it first
            return Begun(None, "sending")
        return Begun(Claim.of(row, 1))


def claim_due(
    uow_factory: UnitOfWorkFactory, *, now: datetime, policy: RetryPolicy, limit: int = 50
) -> list[Claim]:
    """Claim deliveries due again: ``retrying`` ones whose time has come and ``sending`` ones
    whose sender's lease expired. One whose attempts are used up is marked failed instead."""
    claims: list[Claim] = []
    with uow_factory() as uow:
        query = (
            select(Notification)
            .where(col(Notification.status).in_(DUE_STATES), col(Notification.next_attempt_at) <= now)
            .order_by(col(Notification.next_attempt_at))
            .limit(limit)
        )
        if uow.is_postgres:
            query = query.with_for_update(skip_locked=True)
        for row in uow.session.exec(query).all():
            exhausted = row.attempts >= policy.max_attempts
            values = (
                {"status": "failed", "next_attempt_at": None, "last_error": _gave_up(row)}
                if exhausted
                else {
                    "status": "sending",
                    "attempts": row.attempts + 1,
                    "next_attempt_at": now + policy.lease,
                }
            )
            changed = uow.session.execute(
                update(Notification)
                .where(
                    col(Notification.id) == row.id,
                    col(Notification.status) == row.status,
                    col(Notification.attempts) == row.attempts,
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if getattr(changed, "rowcount", 0) != 1:
                continue  # another sender claimed it first
            if exhausted:
                uow.record(given_up(row, error=str(values["last_error"]), now=now))
                log.error("reminder %s via %s failed: %s", row.event_id, row.channel, values["last_error"])
            else:
                claims.append(Claim.of(row, row.attempts + 1))
        uow.commit()
    return claims


def settle(
    uow_factory: UnitOfWorkFactory, claim: Claim, error: DeliveryFailed | None, *,
    now: datetime, policy: RetryPolicy, rng: Callable[[], float] = random.random,
) -> Status:  # fmt: skip
    """Record how the claimed attempt ended; returns the delivery's new status."""
    status: Status
    next_attempt_at: datetime | None = None
    if error is None:
        status, last_error = "sent", None
    elif not error.transient:
        status, last_error = "failed", str(error)[:2000]
    elif claim.attempts >= policy.max_attempts:
        status, last_error = "failed", f"{error} (gave up after {claim.attempts} attempts)"[:2000]
    else:
        status, last_error = "retrying", str(error)[:2000]
        next_attempt_at = now + policy.backoff(claim.attempts, rng=rng)
    with uow_factory() as uow:
        changed = uow.session.execute(
            update(Notification)
            .where(
                col(Notification.id) == claim.id,
                col(Notification.status) == "sending",
                col(Notification.attempts) == claim.attempts,
            )
            .values(status=status, last_error=last_error, next_attempt_at=next_attempt_at)
            .execution_options(synchronize_session=False)
        )
        if status == "failed" and getattr(changed, "rowcount", 0) == 1:
            uow.record(given_up(claim, error=str(last_error), now=now))
        uow.commit()
    if getattr(changed, "rowcount", 0) != 1:
        log.warning("reminder %s via %s: attempt %d ended (%s) after its claim had expired",
                    claim.event_id, claim.channel, claim.attempts, status)  # fmt: skip
    elif status == "failed":
        log.error("reminder %s via %s failed: %s", claim.event_id, claim.channel, last_error)
    return status


def reopen(uow_factory: UnitOfWorkFactory, held: GivenUp, *, now: datetime, lease: timedelta) -> Claim | None:
    """Claim the delivery ``held`` gave up (its dead letter is replayed) for one more attempt.
    None unless it is still failed as that give-up left it: a dead letter replayed twice, or one
    of an earlier give-up, reopens nothing."""
    with uow_factory() as uow:
        row = uow.session.exec(
            select(Notification).where(
                Notification.event_id == held.event_id, Notification.channel == held.channel
            )
        ).first()
        if row is None or (row.status, row.attempts) != ("failed", held.attempts):
            return None
        changed = uow.session.execute(
            update(Notification)
            .where(
                col(Notification.id) == row.id,
                col(Notification.status) == "failed",
                col(Notification.attempts) == row.attempts,
            )
            .values(status="sending", attempts=row.attempts + 1, next_attempt_at=now + lease)
            .execution_options(synchronize_session=False)
        )
        if getattr(changed, "rowcount", 0) != 1:
            return None  # reopened meanwhile by another delivery of the same dead letter
        claim = Claim.of(row, row.attempts + 1)
        uow.commit()
    return claim


def next_due(uow_factory: UnitOfWorkFactory) -> datetime | None:
    """When the earliest delivery that is not settled becomes due (None: there is none)."""
    with uow_factory() as uow:
        earliest = uow.session.exec(
            select(func.min(Notification.next_attempt_at)).where(col(Notification.status).in_(DUE_STATES))
        ).one()
    return None if earliest is None else as_utc(earliest)


def _gave_up(row: Notification) -> str:
    if row.status == "sending":
        reason = "the sender of its last attempt stopped before it finished"
    else:
        reason = row.last_error or "transient failures"
    return f"{reason} (gave up after {row.attempts} attempts)"[:2000]
