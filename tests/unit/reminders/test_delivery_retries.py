"""Retrying a reminder's email and webhook off the event stream: backoff, claims, the retrier.

Bookkeeping runs on SQLite; sending goes to real local servers (aiosmtpd, a TCP socket that
never answers). The same flow through daprd and Kafka is in
``tests/integration/reminders/test_notification_retries.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope
from sqlmodel import Session, select

from devstack.procs import free_port
from events.ports import Delivery, Outcome
from events.reminders.deliveries import (
    LEASE,
    Claim,
    DeliveryFailed,
    RetryPolicy,
    begin,
    claim_due,
    next_due,
    settle,
)
from events.reminders.notifications import ReminderNotifier
from events.reminders.retrier import NotificationRetrier, notification_retries
from tasks.clock import utc_now
from tasks.models import Notification
from tasks.profiles import ProfileChanges
from tasks.unit_of_work import UnitOfWorkFactory
from tests.conftest import FixedClock
from todo_agent.bootstrap import Container, bootstrap
from todo_agent.settings import Settings

T0 = datetime(2026, 11, 26, 16, 0, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=3, base=timedelta(seconds=10), cap=timedelta(minutes=5))
TRANSIENT = DeliveryFailed("webhook answered HTTP 503", transient=True)


@pytest.fixture
def uow(sqlite_service: tuple[Any, UnitOfWorkFactory]) -> UnitOfWorkFactory:
    return sqlite_service[1]


def first_attempt(uow: UnitOfWorkFactory, event_id: str = "41", channel: str = "webhook") -> Claim:
    row = Notification(event_id=event_id, channel=channel, user_id="alice", task_id=7, title="Call mom",
                       remind_at=T0)  # fmt: skip
    started = begin(uow, row, now=T0, lease=LEASE)
    assert started.claim is not None and started.claim.attempts == 1
    return started.claim


def delivery(uow: UnitOfWorkFactory, event_id: str = "41", channel: str = "webhook") -> Notification:
    with uow() as work:
        row = work.session.exec(
            select(Notification).where(Notification.event_id == event_id, Notification.channel == channel)
        ).one()
        work.session.expunge(row)
        return row


def test_the_backoff_doubles_from_the_base_up_to_the_cap_with_jitter_in_its_upper_half() -> None:
    policy = RetryPolicy(base=timedelta(seconds=5), cap=timedelta(seconds=60))
    highest = [policy.backoff(n, rng=lambda: 1.0).total_seconds() for n in range(1, 8)]
    lowest = [policy.backoff(n, rng=lambda: 0.0).total_seconds() for n in range(1, 8)]
    assert highest == [5, 10, 20, 40, 60, 60, 60]
    assert lowest == [2.5, 5, 10, 20, 30, 30, 30]
    assert timedelta(seconds=10) <= policy.backoff(3) <= timedelta(seconds=20)
    assert policy.backoff(10_000, rng=lambda: 1.0) == timedelta(seconds=60)  # no overflow


def test_the_retry_settings_make_the_policy(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(
        notify_max_attempts=4, notify_retry_base_seconds=0.5, notify_retry_max_seconds=30
    )
    policy = RetryPolicy.from_settings(settings)
    assert (policy.max_attempts, policy.base, policy.cap) == (
        4,
        timedelta(seconds=0.5),
        timedelta(seconds=30),
    )
    assert RetryPolicy.from_settings(make_settings()).max_attempts == 8


def test_a_transient_failure_is_due_again_after_its_backoff_and_claimed_by_one_sender(
    uow: UnitOfWorkFactory,
) -> None:
    claim = first_attempt(uow)
    assert settle(uow, claim, TRANSIENT, now=T0, policy=POLICY, rng=lambda: 1.0) == "retrying"
    row = delivery(uow)
    assert (row.status, row.attempts, row.next_attempt_at, row.last_error) == (
        "retrying", 1, T0 + timedelta(seconds=10), "webhook answered HTTP 503",
    )  # fmt: skip
    assert next_due(uow) == T0 + timedelta(seconds=10)

    assert claim_due(uow, now=T0 + timedelta(seconds=9), policy=POLICY) == []
    [again] = claim_due(uow, now=T0 + timedelta(seconds=10), policy=POLICY)
    assert claim_due(uow, now=T0 + timedelta(seconds=11), policy=POLICY) == [], "claimed once"
    assert (again.id, again.attempts, again.title, again.remind_at) == (claim.id, 2, "Call mom", T0)
    row = delivery(uow)
    assert (row.status, row.attempts, row.next_attempt_at) == (
        "sending",
        2,
        T0 + timedelta(seconds=10) + LEASE,
    )

    assert settle(uow, again, None, now=T0 + timedelta(seconds=12), policy=POLICY) == "sent"
    row = delivery(uow)
    assert (row.status, row.attempts, row.next_attempt_at, row.last_error) == ("sent", 2, None, None)
    assert next_due(uow) is None


def test_the_claim_of_a_sender_that_stopped_expires_and_the_late_settle_changes_nothing(
    uow: UnitOfWorkFactory,
) -> None:
    claim = first_attempt(uow)  # its sender "dies" here
    assert claim_due(uow, now=T0 + LEASE - timedelta(seconds=1), policy=POLICY) == []
    [taken_over] = claim_due(uow, now=T0 + LEASE, policy=POLICY)
    assert taken_over.attempts == 2

    settle(uow, claim, None, now=T0 + LEASE, policy=POLICY)  # the first sender, back late
    assert (delivery(uow).status, delivery(uow).attempts) == ("sending", 2)
    settle(uow, taken_over, TRANSIENT, now=T0 + LEASE, policy=POLICY)
    assert delivery(uow).status == "retrying"


def test_a_delivery_is_failed_after_its_last_attempt_with_why(uow: UnitOfWorkFactory) -> None:
    claim, now = first_attempt(uow), T0
    for attempts in (2, 3):
        assert settle(uow, claim, TRANSIENT, now=now, policy=POLICY) == "retrying"
        now += timedelta(minutes=10)
        [claim] = claim_due(uow, now=now, policy=POLICY)
        assert claim.attempts == attempts
    assert settle(uow, claim, TRANSIENT, now=now, policy=POLICY) == "failed"
    row = delivery(uow)
    assert (row.status, row.attempts, row.next_attempt_at) == ("failed", 3, None)
    assert row.last_error == "webhook answered HTTP 503 (gave up after 3 attempts)"
    assert claim_due(uow, now=now + timedelta(days=1), policy=POLICY) == []


def test_a_permanent_failure_is_failed_at_once(uow: UnitOfWorkFactory) -> None:
    claim = first_attempt(uow)
    gone = DeliveryFailed("webhook answered HTTP 410", transient=False)
    assert settle(uow, claim, gone, now=T0, policy=POLICY) == "failed"
    assert (delivery(uow).attempts, delivery(uow).last_error) == (1, "webhook answered HTTP 410")


def test_a_sender_that_stopped_during_the_last_attempt_leaves_a_failed_delivery(
    uow: UnitOfWorkFactory,
) -> None:
    one_attempt = RetryPolicy(max_attempts=1)
    first_attempt(uow)
    assert claim_due(uow, now=T0 + LEASE, policy=one_attempt) == []
    row = delivery(uow)
    assert (row.status, row.attempts) == ("failed", 1)
    assert row.last_error is not None and "stopped before it finished" in row.last_error


def test_a_redelivered_event_starts_no_second_attempt(uow: UnitOfWorkFactory) -> None:
    claim = first_attempt(uow)
    settle(uow, claim, TRANSIENT, now=T0, policy=POLICY)
    again = Notification(event_id="41", channel="webhook", user_id="alice", task_id=7, title="Call mom",
                         remind_at=T0)  # fmt: skip
    started = begin(uow, again, now=T0, lease=LEASE)
    assert (started.claim, started.earlier) == (None, "retrying")
    assert delivery(uow).attempts == 1


# -- the subscriber and the retrier -----------------------------------------------------------
class FlakyInbox:
    """Answers 451 (try again later) to the first ``refusals`` messages."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.messages: list[Envelope] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        if self.refusals > 0:
            self.refusals -= 1
            return "451 4.3.0 Mailbox busy, try again later"
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def flaky_smtp() -> Iterator[tuple[FlakyInbox, int]]:
    inbox, port = FlakyInbox(refusals=1), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


def reminder(event_id: str = "41") -> Delivery:
    data = {"user_id": "alice", "task_id": 7, "title": "Call mom", "remind_at": T0.isoformat()}
    return Delivery(id=event_id, type="todo.reminder.due.v1", topic="reminders", data=data)


def rows(container: Container) -> dict[str, Notification]:
    with Session(container.engine) as session:
        return {row.channel: row for row in session.exec(select(Notification))}


async def test_an_smtp_refusal_is_retried_by_the_retrier_and_in_app_is_written_once(
    make_settings: Callable[..., Settings], flaky_smtp: tuple[FlakyInbox, int]
) -> None:
    inbox, port = flaky_smtp
    container = bootstrap("notifications", make_settings(smtp_host="127.0.0.1", smtp_port=port))
    container.profiles.update("alice", ProfileChanges(email="alice@example.org"))
    notifier, clock = (
        ReminderNotifier(container.uow, container.profiles, container.settings),
        FixedClock(utc_now()),
    )
    retrier = NotificationRetrier(
        container.uow, container.profiles, container.settings, policy=POLICY, clock=clock
    )

    assert await notifier(reminder()) is Outcome.SUCCESS, "the event is done; the email waits"
    found = rows(container)
    assert (found["email"].status, found["email"].attempts, inbox.messages) == ("retrying", 1, [])
    assert found["in_app"].status == "sent"
    assert await retrier.retry_due() == 0, "not due yet"

    clock.now += timedelta(minutes=1)
    assert await retrier.retry_due() == 1
    assert await notifier(reminder()) is Outcome.SUCCESS  # the event delivered again: nothing new
    found = rows(container)
    assert (found["email"].status, found["email"].attempts) == ("sent", 2)
    assert [m.rcpt_tos for m in inbox.messages] == [["alice@example.org"]]
    assert set(found) == {"in_app", "email"}
    container.engine.dispose()


async def test_a_webhook_that_hangs_does_not_hold_the_event_and_is_retried_when_it_fails(
    make_settings: Callable[..., Settings],
) -> None:
    connections: list[asyncio.StreamWriter] = []

    async def never_answer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    container = bootstrap("notifications", make_settings(webhook_allowed_networks=["127.0.0.1/32"]))
    container.profiles.update("alice", ProfileChanges(webhook_url=f"http://127.0.0.1:{port}/hook"))
    retrier = NotificationRetrier(
        container.uow, container.profiles, container.settings, poll=timedelta(seconds=0.2)
    )
    notifier = ReminderNotifier(
        container.uow, container.profiles, container.settings, retrier=retrier, wait=timedelta(seconds=0.3)
    )
    async with notification_retries(retrier):
        started = asyncio.get_running_loop().time()
        assert await notifier(reminder()) is Outcome.SUCCESS
        assert asyncio.get_running_loop().time() - started < 1.5, "answered without waiting for the hook"
        assert rows(container)["webhook"].status == "sending"
        for writer in connections:  # the hook hangs up: a transient failure
            writer.close()
        server.close()
        await server.wait_closed()
        for _ in range(50):
            if rows(container)["webhook"].status != "sending":
                break
            await asyncio.sleep(0.1)
    webhook = rows(container)["webhook"]
    assert (webhook.status, webhook.attempts) == ("retrying", 1)
    assert "unreachable" in (webhook.last_error or "")
    container.engine.dispose()
