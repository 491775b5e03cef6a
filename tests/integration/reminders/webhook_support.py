"""Helpers for the reminder delivery tests on the real stack: webhook endpoints, a mail server
that refuses mail for a while, a user with a reminder soon, the delivery rows, Kafka partitions.

The webhook receiver is a real HTTP server run by the test (``app_server_factory``: uvicorn in
a thread, on a free port); each hook answers with the next status of its script.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope
from kafka import KafkaConsumer, TopicPartition
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from devstack.procs import free_port
from tasks.clock import utc_now
from tasks.models import Notification
from tests.integration.reminders.support import Inbox, ReminderSystem, iso


@dataclass
class Hook:
    """One user's endpoint: the statuses it answers with (the last one repeats; a test may
    change them), what it received, what it answered each time, and when."""

    statuses: list[int]
    received: list[dict[str, Any]] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)
    times: list[datetime] = field(default_factory=list)


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
            hook.answered.append(status)
            hook.times.append(utc_now())
        return JSONResponse({"ok": status < 300}, status)


class FlakySmtpInbox(Inbox):
    """An SMTP mailbox that answers 451 (try again later) to the first ``refusals`` messages
    and notes when each accepted message arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.refusals = 0
        self.refused: list[Envelope] = []
        self.arrived: list[tuple[datetime, Envelope]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        if self.refusals > 0:
            self.refusals -= 1
            self.refused.append(envelope)
            return "451 4.3.0 Mailbox busy, try again later"
        self.arrived.append((utc_now(), envelope))
        return await super().handle_DATA(server, session, envelope)


def flaky_smtp_inbox() -> Iterator[tuple[Inbox, int]]:
    """The body of an ``smtp_inbox`` fixture that replaces the shared mail server with a flaky one."""
    inbox, port = FlakySmtpInbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


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


def kafka_partition(key: str, partitions: int) -> int:
    """The partition Dapr's Kafka producer (Sarama's hash partitioner: FNV-1a 32, signed,
    absolute value of the remainder) picks for a partition key."""
    hashed = 0x811C9DC5
    for byte in key.encode():
        hashed = ((hashed ^ byte) * 0x01000193) & 0xFFFFFFFF
    signed = hashed - (1 << 32) if hashed >= 1 << 31 else hashed
    return abs(signed) % partitions


def partitions_of(brokers: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=brokers)
    try:
        return len(consumer.partitions_for_topic(topic) or ())
    finally:
        consumer.close()


def partition_of_event(brokers: str, offsets: dict[TopicPartition, int], event_id: str) -> int | None:
    """The partition the CloudEvent ``event_id`` was written to after ``offsets``."""
    consumer = KafkaConsumer(bootstrap_servers=brokers, enable_auto_commit=False, consumer_timeout_ms=3000)
    try:
        consumer.assign(list(offsets))
        for part, offset in offsets.items():
            consumer.seek(part, offset)
        for record in consumer:
            if json.loads(record.value).get("id") == event_id:
                return int(record.partition)
        return None
    finally:
        consumer.close()
