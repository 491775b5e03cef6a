"""The reminder email: plain text, the task, the due time in the user's zone, sent over real SMTP."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from email import message_from_bytes
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope

from devstack.procs import free_port
from events.reminders.deliveries import DeliveryFailed
from events.reminders.notifications import (
    ReminderMessage,
    describe_due,
    reminder_email,
    send_email,
)
from todo_agent.settings import Settings

MESSAGE = ReminderMessage(
    user_id="alice",
    task_id=7,
    title="Call mom",
    due_at=datetime(2026, 5, 8, 18, 0, tzinfo=UTC),
    remind_at=datetime(2026, 5, 8, 17, 30, tzinfo=UTC),
)


class Inbox:
    def __init__(self, reply: str = "250 OK") -> None:
        self.messages: list[Envelope] = []
        self.reply = reply

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        self.messages.append(envelope)
        return self.reply


def test_the_due_time_is_shown_in_the_users_zone() -> None:
    assert describe_due(MESSAGE.due_at, "Europe/Berlin") == "Friday 8 May 2026, 20:00 (Europe/Berlin)"
    assert describe_due(MESSAGE.due_at, "America/New_York") == "Friday 8 May 2026, 14:00 (America/New_York)"
    assert describe_due(None, "UTC") == "no due time"


def test_the_email_is_plain_text_with_the_task_and_its_due_time() -> None:
    email = reminder_email(MESSAGE, tz="Europe/Berlin", sender="todo@example.org", to="alice@example.org")
    assert email["Subject"] == "Reminder: Call mom"
    assert email["To"] == "alice@example.org" and email["From"] == "todo@example.org"
    assert email.get_content_type() == "text/plain"
    body = email.get_content()
    assert "Reminder: Call mom" in body
    assert "Due: Friday 8 May 2026, 20:00 (Europe/Berlin)" in body
    assert "19:30 (Europe/Berlin)" in body


async def test_the_email_reaches_a_real_smtp_server() -> None:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        settings = Settings(smtp_host="127.0.0.1", smtp_port=port, database_url="sqlite://")
        email = reminder_email(MESSAGE, tz="Europe/Berlin", sender="todo@localhost", to="alice@example.org")
        await send_email(settings, email)
    finally:
        controller.stop()
    [envelope] = inbox.messages
    assert envelope.rcpt_tos == ["alice@example.org"]
    received = message_from_bytes(envelope.original_content or b"")
    assert received["Subject"] == "Reminder: Call mom"
    assert "20:00 (Europe/Berlin)" in received.get_payload(decode=True).decode()  # type: ignore[union-attr]


@pytest.mark.parametrize(("reply", "transient"), [("451 try later", True), ("554 rejected", False)])
async def test_smtp_replies_tell_transient_from_permanent_failures(reply: str, transient: bool) -> None:
    port = free_port()
    controller = Controller(Inbox(reply), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        settings = Settings(smtp_host="127.0.0.1", smtp_port=port, database_url="sqlite://")
        email = reminder_email(MESSAGE, tz="UTC", sender="todo@localhost", to="alice@example.org")
        with pytest.raises(DeliveryFailed) as failed:
            await send_email(settings, email)
    finally:
        controller.stop()
    assert failed.value.transient is transient


async def test_an_unreachable_smtp_server_is_a_transient_failure() -> None:
    settings = Settings(smtp_host="127.0.0.1", smtp_port=free_port(), database_url="sqlite://")
    email = reminder_email(MESSAGE, tz="UTC", sender="todo@localhost", to="alice@example.org")
    with pytest.raises(DeliveryFailed) as failed:
        await send_email(settings, email)
    assert failed.value.transient
    assert isinstance(failed.value.__cause__, aiosmtplib.SMTPException | OSError)
    await asyncio.sleep(0)
