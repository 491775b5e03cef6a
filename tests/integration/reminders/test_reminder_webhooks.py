"""The webhook channel through the real stack: a user's own HTTP endpoint gets each reminder once.

The webhook receiver is a real HTTP server run by the test (uvicorn in a thread, on a free
port) that answers each POST with the next status of a script. The reminder goes the same way
as in ``test_reminders_through_dapr``: REST -> Dapr job -> ``reminders`` on Kafka -> the
notifications role, which posts to the URL the user saved with ``PATCH /api/me``.
This module's ``smtp_inbox`` replaces the shared one with a mailbox a test can make answer
"451 try again later", to see a retried email next to a webhook that was given up.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from devstack.procs import free_port
from tasks.clock import utc_now
from tasks.models import Notification
from tests.integration.kafka_support import end_offsets
from tests.integration.reminders.support import (
    Inbox,
    ReminderSystem,
    eventually,
    iso,
    kafka_events_since,
)

pytestmark = pytest.mark.integration


@dataclass
class Hook:
    """One user's endpoint: the statuses it answers with (the last one repeats) and what it got."""

    statuses: list[int]
    received: list[dict[str, Any]] = field(default_factory=list)


class WebhookReceiver:
    """``POST /hooks/<name>``: records the JSON body and answers the hook's next status."""

    def __init__(self) -> None:
        self.hooks: dict[str, Hook] = {}
        self._lock = threading.Lock()
        self.app = Starlette(routes=[Route("/hooks/{name}", self._receive, methods=["POST"])])
        self.url = ""

    def hook(self, name: str, *statuses: int) -> str:
        self.hooks[name] = Hook(list(statuses) or [200])
        return f"{self.url}/hooks/{name}"

    async def _receive(self, request: Request) -> JSONResponse:
        hook = self.hooks.get(request.path_params["name"])
        if hook is None:
            return JSONResponse({"detail": "no such hook"}, 404)
        body = await request.json()
        with self._lock:
            hook.received.append(body)
            status = hook.statuses[min(len(hook.received), len(hook.statuses)) - 1]
        return JSONResponse({"ok": status < 300}, status)


class FlakySmtpInbox(Inbox):
    """An SMTP mailbox that answers 451 (try again later) to the first ``refusals`` messages."""

    def __init__(self) -> None:
        super().__init__()
        self.refusals = 0
        self.refused: list[Envelope] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        if self.refusals > 0:
            self.refusals -= 1
            self.refused.append(envelope)
            return "451 4.3.0 Mailbox busy, try again later"
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def smtp_inbox() -> Iterator[tuple[Inbox, int]]:
    """Overrides the reminders' SMTP server with one a test can make refuse mail for a while."""
    inbox, port = FlakySmtpInbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture
def webhooks(app_server_factory: Any) -> WebhookReceiver:
    receiver = WebhookReceiver()
    receiver.url = app_server_factory(receiver.app).url
    return receiver


def someone(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


async def remind_soon(
    system: ReminderSystem, user: str, *, title: str, webhook: str, in_seconds: float = 3
) -> tuple[dict[str, Any], datetime]:
    """As the user: save an email address and a webhook, add a task due in an hour, remind soon."""
    async with system.client(user) as client:
        me = await client.patch("/api/me", json={"email": f"{user}@example.org", "webhook_url": webhook})
        assert me.status_code == 200, me.text
        assert me.json()["webhook_url"] == webhook
        due = utc_now() + timedelta(hours=1)
        created = await client.post("/api/tasks", json={"title": title, "due": iso(due)})
        assert created.status_code == 201, created.text
        task: dict[str, Any] = created.json()
        at = iso(utc_now() + timedelta(seconds=in_seconds))
        reminder = await client.put(f"/api/tasks/{task['id']}/reminder", json={"at": at})
        assert reminder.status_code == 200, reminder.text
    return task, datetime.fromisoformat(reminder.json()["remind_at"])


def deliveries(system: ReminderSystem, task_id: int) -> dict[str, Notification]:
    rows = system.notification_rows(task_id)
    assert len({row.channel for row in rows}) == len(rows), "one delivery row per channel"
    return {row.channel: row for row in rows}


def settled(system: ReminderSystem, task_id: int, channels: dict[str, str]) -> bool:
    """Whether each channel's delivery reached the given status."""
    found = deliveries(system, task_id)
    return all(ch in found and found[ch].status == status for ch, status in channels.items())


def emails_to(inbox: Inbox, address: str) -> list[Envelope]:
    return [m for m in inbox.messages if m.rcpt_tos == [address]]


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


async def test_a_webhook_answering_5xx_is_retried_and_nothing_else_is_sent_again(
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
