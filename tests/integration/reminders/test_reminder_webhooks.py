"""The webhook channel through the real stack: a user's own HTTP endpoint gets each reminder once.

The webhook receiver is a real HTTP server run by the test (see ``webhook_support``). The
reminder goes the same way as in ``test_reminders_through_dapr``: REST -> Dapr job ->
``reminders`` on Kafka -> the notifications role, which posts to the URL the user saved with
``PATCH /api/me``. The notifications role makes one attempt per channel and answers SUCCESS on
a transient failure; its retrier (``events.reminders.retrier``) tries again with backoff, made
short here through the ``TODO_NOTIFY_*`` environment. A permanent failure still sends the event
to ``reminders-dlq`` (one dead letter per channel given up, with its error). This module's
``smtp_inbox`` replaces the shared one with a mailbox a test can make answer "451 try again
later", to see a retried email next to a webhook that was given up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from devstack.procs import free_port
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
    remind_soon,
    settled,
    someone,
)

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The roles read these when ``reminder_system`` starts them: retries within seconds."""
    monkeypatch.setenv("TODO_NOTIFY_RETRY_BASE_SECONDS", "0.5")
    monkeypatch.setenv("TODO_NOTIFY_RETRY_MAX_SECONDS", "2")
    monkeypatch.setenv("TODO_NOTIFY_MAX_ATTEMPTS", "20")


@pytest.fixture
def smtp_inbox() -> Iterator[tuple[Inbox, int]]:
    """Overrides the reminders' SMTP server with one a test can make refuse mail for a while."""
    yield from flaky_smtp_inbox()


async def test_a_reminder_posts_its_task_once_to_the_owners_webhook(
    reminder_system: ReminderSystem, webhooks: WebhookReceiver
) -> None:
    system, alice = reminder_system, someone("alice")
    url = webhooks.hook(alice, 200)
    task, remind_at = await remind_soon(system, alice, title="Call mom", webhook=url)

    await eventually(
        lambda: settled(system, task["id"], {"in_app": "sent", "email": "sent", "webhook": "sent"}),
        seconds=15, what="all three deliveries",
    )  # fmt: skip
    await asyncio.sleep(3)  # anything sent twice would arrive by now

    [fired] = system.reminder_rows(task["id"])
    [body] = webhooks.hooks[alice].received
    assert sorted(body) == ["due_at", "event_id", "remind_at", "task_id", "title", "type", "user_id"]
    assert (body["type"], body["event_id"], body["user_id"], body["task_id"], body["title"]) == (
        "reminder", str(fired.id), alice, task["id"], "Call mom",
    )  # fmt: skip
    assert datetime.fromisoformat(body["due_at"]) == datetime.fromisoformat(task["due_at"])
    assert datetime.fromisoformat(body["remind_at"]) == remind_at
    rows = deliveries(system, task["id"])
    assert {ch: (r.status, r.attempts, r.last_error) for ch, r in rows.items()} == {
        "in_app": ("sent", 1, None),
        "email": ("sent", 1, None),
        "webhook": ("sent", 1, None),
    }
    assert all(r.event_id == str(fired.id) for r in rows.values())
    assert len(emails_to(system.inbox, f"{alice}@example.org")) == 1


async def test_a_webhook_answering_5xx_is_retried_in_the_background_and_nothing_else_is_sent_again(
    reminder_system: ReminderSystem, webhooks: WebhookReceiver
) -> None:
    system, bob = reminder_system, someone("bob")
    offsets = end_offsets(system.kafka_brokers, "reminders-dlq")
    url = webhooks.hook(bob, 503, 502, 200)
    task, _ = await remind_soon(system, bob, title="Pay rent", webhook=url)

    await eventually(
        lambda: settled(system, task["id"], {"webhook": "sent"}), seconds=30, what="the webhook delivery"
    )
    await asyncio.sleep(3)

    received = webhooks.hooks[bob].received
    assert len(received) == 3, "two 5xx answers, then one success: three posts of the same event"
    assert received[0] == received[1] == received[2]
    assert webhooks.hooks[bob].answered == [503, 502, 200]
    rows = deliveries(system, task["id"])
    assert (rows["webhook"].status, rows["webhook"].attempts, rows["webhook"].last_error) == ("sent", 3, None)
    assert (rows["email"].status, rows["email"].attempts) == ("sent", 1)
    assert rows["in_app"].status == "sent"
    assert len(emails_to(system.inbox, f"{bob}@example.org")) == 1
    async with system.client(bob) as client:
        listed = (await client.get("/api/notifications")).json()
    assert [n["title"] for n in listed["items"]] == ["Pay rent"]
    dead = kafka_events_since(
        system.kafka_brokers, offsets, lambda e: e.get("data", {}).get("task_id") == task["id"], wait=2
    )
    assert dead == []


async def test_a_webhook_answering_4xx_is_given_up_and_dead_lettered_without_blocking_email_or_in_app(
    reminder_system: ReminderSystem, webhooks: WebhookReceiver
) -> None:
    system, carol = reminder_system, someone("carol")
    offsets = end_offsets(system.kafka_brokers, "reminders-dlq")
    url = webhooks.hook(carol, 410)
    task, _ = await remind_soon(system, carol, title="Renew passport", webhook=url)

    await eventually(
        lambda: settled(system, task["id"], {"in_app": "sent", "email": "sent", "webhook": "failed"}),
        seconds=15, what="the deliveries",
    )  # fmt: skip
    dead = kafka_events_since(
        system.kafka_brokers, offsets, lambda e: e.get("data", {}).get("task_id") == task["id"], wait=5
    )

    [fired] = system.reminder_rows(task["id"])
    assert [(e["id"], e["data"]["user_id"]) for e in dead] == [(str(fired.id), carol)]
    given_up = dead[0]["data"]["dead_letter"]
    assert (given_up["channel"], given_up["error"]) == ("webhook", "webhook answered HTTP 410")
    assert len(webhooks.hooks[carol].received) == 1, "a permanent failure is not retried"
    webhook = deliveries(system, task["id"])["webhook"]
    assert (webhook.status, webhook.attempts) == ("failed", 1)
    assert webhook.last_error == "webhook answered HTTP 410"
    assert len(emails_to(system.inbox, f"{carol}@example.org")) == 1


async def test_a_webhook_given_up_while_email_was_retried_still_dead_letters_the_event_and_posts_once(
    reminder_system: ReminderSystem, webhooks: WebhookReceiver
) -> None:
    system, dave = reminder_system, someone("dave")
    assert isinstance(system.inbox, FlakySmtpInbox)
    system.inbox.refusals = 1
    offsets = end_offsets(system.kafka_brokers, "reminders-dlq")
    url = webhooks.hook(dave, 404)
    task, _ = await remind_soon(system, dave, title="Book dentist", webhook=url)

    await eventually(
        lambda: settled(system, task["id"], {"email": "sent", "webhook": "failed"}),
        seconds=30, what="the email's retry",
    )  # fmt: skip
    dead = kafka_events_since(
        system.kafka_brokers, offsets, lambda e: e.get("data", {}).get("task_id") == task["id"], wait=5
    )

    [fired] = system.reminder_rows(task["id"])
    assert len(system.inbox.refused) == 1
    assert len(emails_to(system.inbox, f"{dave}@example.org")) == 1
    assert len(webhooks.hooks[dave].received) == 1
    rows = deliveries(system, task["id"])
    assert (rows["email"].attempts, rows["webhook"].attempts) == (2, 1)
    assert [e["id"] for e in dead] == [str(fired.id)], "the given-up webhook still dead-letters the event"


async def test_a_webhook_that_refuses_connections_is_retried_until_it_is_back_and_posted_once(
    reminder_system: ReminderSystem, app_server_factory: Any
) -> None:
    system, erin = reminder_system, someone("erin")
    port = free_port()  # nothing listens there yet: the connection is refused
    task, _ = await remind_soon(
        system, erin, title="Feed the cat", webhook=f"http://127.0.0.1:{port}/hooks/{erin}"
    )

    await eventually(
        lambda: settled(system, task["id"], {"in_app": "sent", "email": "sent", "webhook": "retrying"}),
        seconds=15, what="in-app and email sent, the webhook waiting to be retried",
    )  # fmt: skip
    assert "unreachable" in (deliveries(system, task["id"])["webhook"].last_error or "")
    back = WebhookReceiver()
    back.hook(erin, 200)
    app_server_factory(back.app, port=port)
    await eventually(
        lambda: settled(system, task["id"], {"webhook": "sent"}),
        seconds=30,
        what="the webhook once it is back",
    )
    await asyncio.sleep(3)

    [body] = back.hooks[erin].received
    assert (body["task_id"], body["title"], body["user_id"]) == (task["id"], "Feed the cat", erin)
    rows = deliveries(system, task["id"])
    assert rows["webhook"].attempts >= 2 and rows["webhook"].last_error is None
    assert (rows["email"].attempts, rows["in_app"].attempts) == (1, 1)
    assert len(emails_to(system.inbox, f"{erin}@example.org")) == 1
