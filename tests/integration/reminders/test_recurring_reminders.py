"""The next occurrence of a recurring task gets its reminder job at once, through the real stack.

The recurrence role makes the next occurrence but schedules no job (a Dapr job calls back the
app that scheduled it); the api role sees the occurrence's ``task-updates`` event and schedules
it. The api's reconciler keeps its real 30 s interval: the test creates and completes the task
at a moment when no reconciler run can fall in the window it measures.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select

from devstack.components import RenderedResources, subscriptions_for
from events.contracts import TASK_EVENTS, TASK_UPDATES
from events.reminders.reconciler import INTERVAL
from tasks.clock import as_utc, utc_now
from tasks.models import Task
from tests.integration.kafka_support import commit_offsets, end_offsets, wait_for_consumer_group
from tests.integration.reminders.support import ReminderSystem, eventually, iso, start_role

pytestmark = pytest.mark.integration


def quiet_window_wait(started: float, ready: float, seconds: float) -> float:
    """How long to wait until the next ``seconds`` hold no reconciler run of an api whose
    start-up (when it reconciles first) happened between the monotonic times ``started`` and
    ``ready``; it then reconciles every ``INTERVAL`` (plus the time a run takes)."""
    period, now = INTERVAL.total_seconds(), time.monotonic()
    for k in range(1, 10_000):
        earliest, latest = started + k * period, ready + k * (period + 0.5)
        if latest < now:
            continue
        return 0.0 if earliest > now + seconds else latest - now
    raise AssertionError("unreachable")


def next_occurrence_of(engine: Any, task_id: int) -> Callable[[], Task | None]:
    def find() -> Task | None:
        with Session(engine) as session:
            return session.exec(select(Task).where(Task.previous_occurrence_id == task_id)).first()

    return find


async def read_job(sidecar_url: str, task_id: int) -> dict[str, Any] | None:
    async with httpx.AsyncClient(base_url=sidecar_url, timeout=10) as client:
        response = await client.get(f"/v1.0/jobs/reminder-task-{task_id}")
    if response.status_code != 200:
        return None
    job: dict[str, Any] = response.json()
    return job


async def test_completing_a_recurring_task_schedules_the_next_occurrences_reminder_at_once(
    reminder_resources: tuple[RenderedResources, str, str],
    session_id: str,
    pg_url: str,
    kafka_brokers: str,
    sidecar_factory: Any,
    app_server_factory: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resources, api_id, _ = reminder_resources
    recurrence_id = f"todo-recurrence-{session_id}"
    subscription = Path(resources.path, "recurrence-subscription.yaml")
    await asyncio.to_thread(subscription.write_text, subscriptions_for({"todo-recurrence": recurrence_id}))
    common = {"pg_url": pg_url, "resources": resources, "sidecar_factory": sidecar_factory,
              "app_server_factory": app_server_factory}  # fmt: skip
    # Both groups are new and their component reads from the oldest offset: start them at the
    # topics' ends, so a stack that already carries many events (a long-lived dev stack) does
    # not make the recurrence consumer read all of them before this test's completion.
    for group in (api_id, recurrence_id):
        for topic in (TASK_EVENTS, TASK_UPDATES):
            commit_offsets(kafka_brokers, group, end_offsets(kafka_brokers, topic))
    started = time.monotonic()
    api = start_role("api", api_id, monkeypatch=monkeypatch, **common)
    ready = time.monotonic()
    start_role("recurrence", recurrence_id, **common)
    wait_for_consumer_group(kafka_brokers, api_id)
    wait_for_consumer_group(kafka_brokers, recurrence_id)
    system = ReminderSystem(api=api, notifications=None, kafka_brokers=kafka_brokers)

    await asyncio.sleep(quiet_window_wait(started, ready, seconds=6))
    async with system.client(f"frank-{uuid.uuid4().hex[:8]}") as client:
        # Every minute (tasks repeat at most hourly, but an hourly rule may list its minutes),
        # reminded 1 minute before: this occurrence's reminder is 10 s away, the next one's 70 s.
        due = utc_now() + timedelta(seconds=70)
        every_minute = "FREQ=HOURLY;BYMINUTE=" + ",".join(str(minute) for minute in range(60))
        created = await client.post(
            "/api/tasks",
            json={
                "title": "Stretch",
                "due": iso(due),
                "recurrence": every_minute,
                "remind_before_minutes": 1,
            },
        )
        assert created.status_code == 201, created.text
        task = created.json()
        assert (await client.post(f"/api/tasks/{task['id']}/complete")).status_code == 200
        completed_at = time.monotonic()

    find_next = next_occurrence_of(api.container.engine, task["id"])
    following = await eventually(find_next, seconds=3, what="the next occurrence")
    assert following.id is not None and following.remind_at is not None
    remind_at = as_utc(following.remind_at)
    job = None
    while job is None and time.monotonic() - completed_at < 3:
        job = await read_job(api.sidecar.http_url, following.id)
        await asyncio.sleep(0.05)
    took = time.monotonic() - completed_at
    assert job is not None, "no job for the next occurrence 3 s after the completion"
    print(f"the next occurrence's job existed {took * 1000:.0f} ms after the completion")
    data = job["data"]["value"]  # daprd answers with the data as a protobuf Value
    assert (data["task_id"], as_utc(datetime.fromisoformat(data["remind_at"]))) == (following.id, remind_at)
    assert as_utc(datetime.fromisoformat(job["dueTime"].replace("Z", "+00:00"))) == remind_at
    assert utc_now() < remind_at, "the next reminder must still be ahead to see it fire"
    assert await read_job(api.sidecar.http_url, task["id"]) is None, "the completed one's job is gone"

    [fired] = await eventually(
        lambda: system.reminder_rows(following.id), seconds=100, what="the next occurrence's reminder"
    )
    lateness = fired.created_at - remind_at
    print(f"the next occurrence's reminder fired {lateness.total_seconds() * 1000:.0f} ms after its time")
    assert timedelta(0) <= lateness <= timedelta(seconds=2)
    assert system.reminder_rows(task["id"]) == [], "the completed occurrence never reminded"
