"""``todo-agent run`` reminds: the in-process scheduler fires on time, rebuilds its timers at start-up,
fires reminders missed while down within the grace period and marks older ones missed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope
from sqlmodel import Session, col, select

from devstack.procs import free_port
from events.reminders.jobs import InProcessJobScheduler
from tasks.clock import utc_now
from tasks.inputs import TaskDraft
from tasks.models import Notification, OutboxEvent, Task
from tasks.profiles import ProfileChanges
from tasks.service import Actor, TaskService
from todo_agent.api import app_for
from todo_agent.bootstrap import bootstrap
from todo_agent.settings import Settings


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Envelope] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        self.messages.append(envelope)
        return "250 OK"


async def wait_for(check: Callable[[], bool], seconds: float) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_the_embedded_default_fires_on_time_and_settles_reminders_missed_while_down(
    make_settings: Callable[..., Settings],
) -> None:
    inbox, port = Inbox(), free_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=port)
    smtp.start()
    container = bootstrap("all", make_settings(smtp_host="127.0.0.1", smtp_port=port, user="alice"))
    alice = Actor("alice", "Europe/Berlin")
    container.profiles.update("alice", ProfileChanges(email="alice@example.org"))
    now = utc_now()
    # Written while "the process was down": one reminder 5 minutes late, one 2 hours late.
    recent = TaskService(container.uow, clock=lambda: now - timedelta(minutes=10)).add(
        alice, TaskDraft(title="Recent", remind_at=now - timedelta(minutes=5))
    )
    old = TaskService(container.uow, clock=lambda: now - timedelta(hours=3)).add(
        alice, TaskDraft(title="Old", remind_at=now - timedelta(hours=2))
    )
    app = app_for(container)
    try:
        async with app.router.lifespan_context(app):
            soon = container.tasks.add(
                alice, TaskDraft(title="Call mom", remind_at=utc_now() + timedelta(seconds=1))
            )
            await wait_for(lambda: len(inbox.messages) >= 2, seconds=8)
            await asyncio.sleep(0.3)  # nothing more arrives
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
            ) as client:
                listed = (await client.get("/api/notifications")).json()
                first = listed["items"][0]["id"]
                read = (await client.post(f"/api/notifications/{first}/read")).json()
                unread = (await client.get("/api/notifications", params={"unread": True})).json()
    finally:
        smtp.stop()

    with Session(container.engine) as session:
        states = {t.title: t.reminder_state for t in session.exec(select(Task))}
        due_rows = session.exec(select(OutboxEvent).where(OutboxEvent.topic == "reminders")).all()
        in_app = session.exec(select(Notification).where(Notification.channel == "in_app")).all()
        emails = session.exec(select(Notification).where(col(Notification.channel) == "email")).all()
    assert states == {"Recent": "sent", "Old": "missed", "Call mom": "sent"}
    assert sorted(r.task_id for r in due_rows if r.task_id is not None) == sorted([recent.id, soon.id])
    [soon_row] = [r for r in due_rows if r.task_id == soon.id]
    assert soon.remind_at is not None and soon_row.created_at >= soon.remind_at
    assert soon_row.created_at - soon.remind_at < timedelta(seconds=1)
    assert old.id not in {r.task_id for r in due_rows}
    assert len(in_app) == 2 and {n.status for n in emails} == {"sent"} and len(emails) == 2
    assert sorted(m.rcpt_tos[0] for m in inbox.messages) == ["alice@example.org"] * 2
    assert [item["title"] for item in listed["items"]] == ["Call mom", "Recent"]
    assert listed["unread"] == 2 and read["read"] is True
    assert [item["title"] for item in unread["items"]] == ["Recent"]


async def test_completing_deleting_or_moving_a_reminder_changes_what_fires(
    make_settings: Callable[..., Settings],
) -> None:
    container = bootstrap("all", make_settings(user="alice"))
    alice = Actor("alice", "Europe/Berlin")
    app = app_for(container)
    async with app.router.lifespan_context(app):
        at = utc_now() + timedelta(seconds=1)
        done = container.tasks.add(alice, TaskDraft(title="Done early", remind_at=at))
        gone = container.tasks.add(alice, TaskDraft(title="Deleted", remind_at=at))
        cleared = container.tasks.add(alice, TaskDraft(title="Cleared", remind_at=at))
        moved = container.tasks.add(alice, TaskDraft(title="Moved", remind_at=at))
        container.tasks.complete(alice, done.id)
        container.tasks.delete(alice, gone.id)
        container.tasks.cancel_reminder(alice, cleared.id)
        later = container.tasks.set_reminder(alice, moved.id, at=utc_now() + timedelta(seconds=2))
        assert container.reminders is not None and isinstance(container.jobs, InProcessJobScheduler)
        await container.reminders.drain()
        assert container.jobs.pending == 1  # only the moved reminder has a job
        await asyncio.sleep(1.5)
        with Session(container.engine) as session:
            assert session.exec(select(OutboxEvent).where(OutboxEvent.topic == "reminders")).all() == []
        await asyncio.sleep(1.2)
    with Session(container.engine) as session:
        [row] = session.exec(select(OutboxEvent).where(OutboxEvent.topic == "reminders")).all()
    assert row.task_id == moved.id and later.remind_at is not None and row.created_at >= later.remind_at


async def test_the_next_occurrence_of_a_recurring_task_gets_its_own_reminder(
    make_settings: Callable[..., Settings],
) -> None:
    container = bootstrap("all", make_settings(user="alice"))
    alice = Actor("alice", "Europe/Berlin")
    app = app_for(container)
    async with app.router.lifespan_context(app):
        first = container.tasks.add(
            alice,
            TaskDraft(title="Stand-up", due="tomorrow 9:00", recurrence="daily", remind_before_minutes=15),
        )
        container.tasks.complete(alice, first.id)
        scheduling = container.reminders
        assert scheduling is not None
        await wait_for(lambda: any(task_id != first.id for task_id in scheduling.known), seconds=5)
        [(next_id, remind_at)] = scheduling.known.items()
    with Session(container.engine) as session:
        following = session.get(Task, next_id)
    assert following is not None and following.previous_occurrence_id == first.id
    assert following.due_at is not None and remind_at == following.due_at - timedelta(minutes=15)
    assert first.due_at is not None and following.due_at == first.due_at + timedelta(days=1)
