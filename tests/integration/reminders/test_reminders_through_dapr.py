"""Reminders through the real daprd + Dapr scheduler, Kafka, PostgreSQL and an SMTP server."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tasks.clock import utc_now
from tests.integration.kafka_support import end_offsets as kafka_end_offsets
from tests.integration.reminders.support import (
    APP_TOKEN,
    ReminderSystem,
    eventually,
    iso,
    kafka_events_since,
)

pytestmark = pytest.mark.integration


def user(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


async def add_task(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    response = await client.post("/api/tasks", json=fields)
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


async def set_reminder_in(client: httpx.AsyncClient, task_id: int, seconds: float) -> datetime:
    response = await client.put(
        f"/api/tasks/{task_id}/reminder", json={"at": iso(utc_now() + timedelta(seconds=seconds))}
    )
    assert response.status_code == 200, response.text
    return datetime.fromisoformat(response.json()["remind_at"])


async def open_socket(url: str) -> ClientConnection:
    socket = await connect(url)
    hello = json.loads(await asyncio.wait_for(socket.recv(), 10))
    assert hello["type"] == "hello"
    return socket


async def notifications_on(socket: ClientConnection, seconds: float) -> list[dict[str, Any]]:
    """Every notification message a socket receives within ``seconds``."""
    found: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        try:
            message = json.loads(await asyncio.wait_for(socket.recv(), left))
        except TimeoutError:
            break
        if message.get("type") == "notification":
            found.append(message)
    return found


async def test_a_reminder_fires_on_time_once_by_kafka_email_and_every_open_window_of_its_owner(
    reminder_system: ReminderSystem,
) -> None:
    system = reminder_system
    alice, bob = user("alice"), user("bob")
    offsets = kafka_end_offsets(system.kafka_brokers, "reminders")
    async with system.client(alice) as client:
        assert (await client.patch("/api/me", json={"email": f"{alice}@example.org"})).status_code == 200
        task = await add_task(client, title="Call mom", due=iso(utc_now() + timedelta(hours=1)))
        sockets = [await open_socket(system.ws_url(alice)) for _ in range(2)]
        bob_socket = await open_socket(system.ws_url(bob))
        remind_at = await set_reminder_in(client, task["id"], 3)

        received = await asyncio.gather(*(notifications_on(s, 12) for s in [*sockets, bob_socket]))
        listed = (await client.get("/api/notifications")).json()
    for socket in [*sockets, bob_socket]:
        await socket.close()

    [fired] = system.reminder_rows(task["id"])
    lateness = fired.created_at - remind_at
    print(f"reminder fired {lateness.total_seconds() * 1000:.0f} ms after its time")
    assert timedelta(0) <= lateness <= timedelta(seconds=2)
    on_kafka = kafka_events_since(
        system.kafka_brokers, offsets, lambda e: e.get("data", {}).get("task_id") == task["id"]
    )
    assert [(e["type"], e["data"]["user_id"]) for e in on_kafka] == [("todo.reminder.due.v1", alice)]
    [email] = system.inbox.messages
    assert email.rcpt_tos == [f"{alice}@example.org"]
    text = (email.content or b"").decode() if isinstance(email.content, bytes) else str(email.content)
    assert "Reminder: Call mom" in text and "(Europe/Berlin)" in text
    for messages in received[:2]:
        [note] = messages
        assert (note["task_id"], note["title"], note["user_id"]) == (task["id"], "Call mom", alice)
    assert received[2] == []
    assert [n["title"] for n in listed["items"]] == ["Call mom"] and listed["unread"] == 1
    assert {(n.channel, n.status) for n in system.notification_rows(task["id"])} == {
        ("in_app", "sent"),
        ("email", "sent"),
    }


async def test_completing_or_deleting_before_the_time_fires_nothing_and_moving_fires_at_the_new_time(
    reminder_system: ReminderSystem,
) -> None:
    system = reminder_system
    async with system.client(user("carol")) as client:
        done = await add_task(client, title="Done early")
        gone = await add_task(client, title="Deleted early")
        due = utc_now() + timedelta(minutes=1, seconds=3)
        moved = await add_task(client, title="Moved", due=iso(due), remind_before_minutes=1)
        await set_reminder_in(client, done["id"], 3)
        await set_reminder_in(client, gone["id"], 3)
        assert (await client.post(f"/api/tasks/{done['id']}/complete")).status_code == 200
        assert (await client.delete(f"/api/tasks/{gone['id']}")).status_code == 200
        response = await client.patch(
            f"/api/tasks/{moved['id']}", json={"due": iso(due + timedelta(seconds=4))}
        )
        new_remind_at = datetime.fromisoformat(response.json()["remind_at"])
        assert new_remind_at == datetime.fromisoformat(moved["remind_at"]) + timedelta(seconds=4)

        await asyncio.sleep(3.5)
        assert system.reminder_rows(moved["id"]) == []  # not at the old time
        [fired] = await eventually(
            lambda: system.reminder_rows(moved["id"]), seconds=6, what="moved reminder"
        )
        assert timedelta(0) <= fired.created_at - new_remind_at <= timedelta(seconds=2)
        await asyncio.sleep(1)
    assert system.reminder_rows(done["id"]) == [] and system.reminder_rows(gone["id"]) == []
    assert len(system.reminder_rows(moved["id"])) == 1
    assert not await system.job_exists(done["id"]) and not await system.job_exists(gone["id"])


async def test_delivering_the_same_job_callback_twice_makes_one_notification(
    reminder_system: ReminderSystem,
) -> None:
    system = reminder_system
    async with system.client(user("dave")) as client:
        task = await add_task(client, title="Water plants")
        remind_at = await set_reminder_in(client, task["id"], 1)
    await asyncio.sleep(max(0.0, (remind_at - utc_now()).total_seconds()) + 0.2)
    data = {"task_id": task["id"], "remind_at": remind_at.isoformat()}
    wrapped = {
        "type_url": "type.googleapis.com/google.protobuf.Value",
        "value": base64.b64encode(json.dumps(data).encode()).decode(),
    }
    name = f"reminder-task-{task['id']}"
    async with httpx.AsyncClient(base_url=system.url, timeout=10) as raw:
        refused = await raw.post(f"/job/{name}", json=data)
        replies = [
            await raw.post(f"/job/{name}", json=body, headers={"dapr-api-token": APP_TOKEN})
            for body in (data, wrapped, data)
        ]
    assert refused.status_code == 401
    assert all(r.status_code == 200 for r in replies)
    await eventually(lambda: system.notification_rows(task["id"]), seconds=10, what="the notification")
    await asyncio.sleep(2)  # Dapr's own delivery of the job comes in as well
    assert len(system.reminder_rows(task["id"])) == 1
    assert [n.channel for n in system.notification_rows(task["id"])] == ["in_app"]
