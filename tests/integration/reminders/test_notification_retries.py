"""Retries of email and webhook deliveries happen beside the ``reminders`` stream, not in it.

Kafka delivers a partition in order and daprd redelivers an event the app asked to retry before
the next one, so a subscriber that retried one user's failing webhook through Dapr held every
reminder behind it on that partition. Now the notifications role makes one attempt per channel,
answers SUCCESS and retries in the background (``events.reminders.retrier``). Through the real
stack (REST -> Dapr job -> Kafka -> notifications role -> aiosmtpd and webhook servers run by
the test), with retry timings made short through the ``TODO_NOTIFY_*`` environment.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from events.reminders.deliveries import RetryPolicy, claim_due
from tasks.clock import utc_now
from tasks.db import make_engine, migrate, normalise_url
from tasks.models import Notification
from tasks.unit_of_work import UnitOfWorkFactory
from tests.integration.kafka_support import end_offsets
from tests.integration.reminders.support import (
    Inbox,
    ReminderSystem,
    eventually,
    kafka_events_since,
)
from tests.integration.reminders.webhook_support import (
    FlakySmtpInbox,
    WebhookReceiver,
    deliveries,
    emails_to,
    flaky_smtp_inbox,
    kafka_partition,
    partition_of_event,
    partitions_of,
    remind_soon,
    settled,
    someone,
)

pytestmark = pytest.mark.integration
ON_TIME = timedelta(seconds=2)


@pytest.fixture
def notify_env() -> dict[str, str]:
    """``TODO_NOTIFY_*`` for the roles; a test overrides it with ``parametrize``."""
    return {"TODO_NOTIFY_MAX_ATTEMPTS": "20"}


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch, notify_env: dict[str, str]) -> None:
    """The roles read these when ``reminder_system`` starts them: retries within seconds."""
    monkeypatch.setenv("TODO_NOTIFY_RETRY_BASE_SECONDS", "0.5")
    monkeypatch.setenv("TODO_NOTIFY_RETRY_MAX_SECONDS", "2")
    for name, value in notify_env.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def smtp_inbox() -> Iterator[tuple[Inbox, int]]:
    yield from flaky_smtp_inbox()


def dead_letters(system: ReminderSystem, offsets: Any, task_id: int) -> list[dict[str, Any]]:
    return kafka_events_since(
        system.kafka_brokers, offsets, lambda e: e.get("data", {}).get("task_id") == task_id, wait=3
    )


async def test_a_failing_webhook_of_one_user_does_not_hold_up_another_users_reminder_on_its_partition(
    reminder_system: ReminderSystem, webhooks: WebhookReceiver
) -> None:
    system, brokers = reminder_system, reminder_system.kafka_brokers
    inbox = system.inbox
    assert isinstance(inbox, FlakySmtpInbox)
    partitions, bob = partitions_of(brokers, "reminders"), someone("bob")
    alice = next(
        name
        for name in (someone("alice") for _ in range(1000))
        if kafka_partition(name, partitions) == kafka_partition(bob, partitions)
    )
    offsets = end_offsets(brokers, "reminders")
    bob_url, alice_url = webhooks.hook(bob, 503), webhooks.hook(alice, 200)  # bob's is down for now
    bob_task, bob_at = await remind_soon(system, bob, title="Pay rent", webhook=bob_url, in_seconds=3)
    alice_task, alice_at = await remind_soon(system, alice, title="Call mom", webhook=alice_url, in_seconds=4)
    assert alice_at > bob_at

    def arrived(user: str) -> list[Any]:
        return [when for when, mail in inbox.arrived if mail.rcpt_tos == [f"{user}@example.org"]]

    [alice_mail_at] = await eventually(lambda: arrived(alice), seconds=20, what="alice's email")
    await eventually(
        lambda: settled(system, alice_task["id"], {"in_app": "sent", "email": "sent", "webhook": "sent"}),
        seconds=5, what="alice's deliveries",
    )  # fmt: skip
    alice_rows, bob_rows = deliveries(system, alice_task["id"]), deliveries(system, bob_task["id"])
    bob_hook = webhooks.hooks[bob]
    print(f"alice's email {(alice_mail_at - alice_at).total_seconds():.2f} s after her reminder time, "
          f"while bob's webhook had failed {len(bob_hook.answered)} times")  # fmt: skip
    assert timedelta(0) <= alice_mail_at - alice_at <= ON_TIME
    assert alice_rows["in_app"].created_at - alice_at <= ON_TIME
    assert webhooks.hooks[alice].answered == [200]
    assert webhooks.hooks[alice].times[0] - alice_at <= ON_TIME
    assert bob_rows["webhook"].status in ("retrying", "sending"), "bob's webhook is still failing"
    assert bob_hook.answered and set(bob_hook.answered) == {503}
    [bob_mail_at] = arrived(bob)
    assert bob_mail_at - bob_at <= ON_TIME and bob_rows["in_app"].created_at - bob_at <= ON_TIME
    [bob_event], [alice_event] = system.reminder_rows(bob_task["id"]), system.reminder_rows(alice_task["id"])
    bob_partition = partition_of_event(brokers, offsets, str(bob_event.id))
    assert bob_partition is not None
    assert partition_of_event(brokers, offsets, str(alice_event.id)) == bob_partition, "one partition"

    bob_hook.statuses = [200]  # bob's endpoint is back
    await eventually(
        lambda: settled(system, bob_task["id"], {"webhook": "sent"}), seconds=15, what="bob's webhook"
    )
    await asyncio.sleep(3)  # anything sent twice would arrive by now

    assert bob_hook.answered.count(200) == 1 and bob_hook.answered[-1] == 200
    assert all(body == bob_hook.received[0] for body in bob_hook.received), "the same body each time"
    bob_rows = deliveries(system, bob_task["id"])
    assert (bob_rows["webhook"].attempts, bob_rows["webhook"].last_error) == (len(bob_hook.answered), None)
    assert (bob_rows["email"].attempts, bob_rows["in_app"].attempts) == (1, 1)
    assert len(arrived(bob)) == 1 and len(arrived(alice)) == 1
    assert webhooks.hooks[alice].answered == [200]


@pytest.mark.parametrize("notify_env", [{"TODO_NOTIFY_MAX_ATTEMPTS": "3"}])
async def test_a_webhook_failing_past_the_attempt_limit_ends_failed_and_is_dead_lettered_once(
    reminder_system: ReminderSystem, webhooks: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    system, carol = reminder_system, someone("carol")
    caplog.set_level(logging.ERROR, logger="events.reminders.deliveries")
    offsets = end_offsets(system.kafka_brokers, "reminders-dlq")
    task, _ = await remind_soon(system, carol, title="Renew passport", webhook=webhooks.hook(carol, 503))

    await eventually(
        lambda: settled(system, task["id"], {"webhook": "failed"}), seconds=25, what="the webhook given up"
    )
    await asyncio.sleep(3)

    assert webhooks.hooks[carol].answered == [503, 503, 503]
    rows = deliveries(system, task["id"])
    assert (rows["webhook"].attempts, rows["webhook"].next_attempt_at) == (3, None)
    assert rows["webhook"].last_error == "webhook answered HTTP 503 (gave up after 3 attempts)"
    assert (rows["email"].status, rows["email"].attempts) == ("sent", 1)
    assert (rows["in_app"].status, rows["in_app"].attempts) == ("sent", 1)
    assert len(emails_to(system.inbox, f"{carol}@example.org")) == 1
    [fired] = system.reminder_rows(task["id"])
    assert any(
        str(fired.id) in r.getMessage() and "gave up after 3 attempts" in r.getMessage()
        for r in caplog.records
    ), "the give-up is logged with why"
    # the event was acknowledged long before: the give-up wrote its own dead letter, once
    [dead] = dead_letters(system, offsets, task["id"])
    assert (dead["id"], dead["type"], dead["data"]["task_id"], dead["data"]["user_id"]) == (
        str(fired.id), "todo.reminder.due.v1", task["id"], carol,
    )  # fmt: skip
    given_up = dead["data"]["dead_letter"]
    assert (given_up["channel"], given_up["attempts"], given_up["error"]) == (
        "webhook", 3, "webhook answered HTTP 503 (gave up after 3 attempts)",
    )  # fmt: skip


async def test_an_smtp_temporary_failure_is_retried_without_sending_in_app_or_the_webhook_again(
    reminder_system: ReminderSystem, webhooks: WebhookReceiver
) -> None:
    system, dave = reminder_system, someone("dave")
    inbox = system.inbox
    assert isinstance(inbox, FlakySmtpInbox)
    inbox.refusals = 2
    offsets = end_offsets(system.kafka_brokers, "reminders-dlq")
    task, remind_at = await remind_soon(system, dave, title="Book dentist", webhook=webhooks.hook(dave, 200))

    await eventually(
        lambda: settled(system, task["id"], {"email": "sent", "webhook": "sent", "in_app": "sent"}),
        seconds=20, what="the email's retries",
    )  # fmt: skip
    await asyncio.sleep(3)

    assert len(inbox.refused) == 2
    assert len(emails_to(inbox, f"{dave}@example.org")) == 1
    assert webhooks.hooks[dave].answered == [200]
    assert webhooks.hooks[dave].times[0] - remind_at <= ON_TIME, "the webhook did not wait for the email"
    rows = deliveries(system, task["id"])
    assert {ch: (r.status, r.attempts, r.last_error) for ch, r in rows.items()} == {
        "in_app": ("sent", 1, None),
        "email": ("sent", 3, None),
        "webhook": ("sent", 1, None),
    }
    async with system.client(dave) as client:
        listed = (await client.get("/api/notifications")).json()
    assert [n["title"] for n in listed["items"]] == ["Book dentist"]
    assert dead_letters(system, offsets, task["id"]) == []


@pytest.fixture
def private_database(pg_url: str) -> Iterator[str]:
    """A database of its own, so the claims see only this test's deliveries."""
    name = f"todo_claims_{uuid.uuid4().hex[:10]}"
    admin = create_engine(normalise_url(pg_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield pg_url.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_replicas_claiming_together_on_postgresql_each_get_different_deliveries(
    private_database: str,
) -> None:
    engine = make_engine(private_database)
    migrate(engine)
    uow, now = UnitOfWorkFactory(engine), utc_now()
    with uow() as work:
        work.session.add_all(
            Notification(
                event_id=str(i),
                channel="webhook",
                user_id="alice",
                task_id=i,
                title="Call mom",
                remind_at=now,
                status="retrying",
                attempts=1,
                next_attempt_at=now,
            )  # fmt: skip
            for i in range(40)
        )
        work.session.commit()
    policy = RetryPolicy(max_attempts=8)

    with ThreadPoolExecutor(max_workers=4) as pool:
        rounds = list(pool.map(lambda _: claim_due(uow, now=now, policy=policy, limit=10), range(4)))
    engine.dispose()

    claimed = [claim.event_id for claims in rounds for claim in claims]
    assert sorted(claimed, key=int) == [str(i) for i in range(40)], "every delivery claimed exactly once"
    assert all(claim.attempts == 2 for claims in rounds for claim in claims)
