"""A reminder scheduled before the Dapr scheduler and the app's daprd restart still fires, once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest

from devstack.components import RenderedResources
from devstack.scheduler import Scheduler
from tasks.clock import utc_now
from tests.integration.reminders.support import APP_TOKEN, ReminderSystem, eventually, iso, start_role

pytestmark = pytest.mark.integration


async def test_a_reminder_survives_restarts_of_the_scheduler_and_daprd(
    reminder_resources: tuple[RenderedResources, str, str],
    private_scheduler: Scheduler,
    pg_url: str,
    kafka_brokers: str,
    sidecar_factory: Any,
    app_server_factory: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resources, api_id, _ = reminder_resources
    scheduler_address = private_scheduler.cfg.scheduler_address
    api = start_role(
        "api", api_id, pg_url=pg_url, resources=resources, sidecar_factory=sidecar_factory,
        app_server_factory=app_server_factory, scheduler=scheduler_address, monkeypatch=monkeypatch,
    )  # fmt: skip
    system = ReminderSystem(api=api, notifications=None, kafka_brokers=kafka_brokers)
    async with system.client(f"erin-{uuid.uuid4().hex[:8]}") as client:
        task = (await client.post("/api/tasks", json={"title": "Take the cake out"})).json()
        response = await client.put(
            f"/api/tasks/{task['id']}/reminder", json={"at": iso(utc_now() + timedelta(seconds=15))}
        )
        remind_at = datetime.fromisoformat(response.json()["remind_at"])
    for _ in range(50):  # scheduled after commit, off the request
        if await system.job_exists(task["id"]):
            break
        await asyncio.sleep(0.1)
    assert await system.job_exists(task["id"])

    api.sidecar.stop()
    private_scheduler.down()
    private_scheduler.up()
    sidecar_factory(
        api_id, api.server.port, resources=resources, app_api_token=APP_TOKEN,
        scheduler=scheduler_address, wait_for="app",
    )  # fmt: skip
    assert utc_now() < remind_at, "the restarts took longer than the reminder's lead time"

    [fired] = await eventually(lambda: system.reminder_rows(task["id"]), seconds=60, what="the reminder")
    lateness = fired.created_at - remind_at
    print(f"after the restarts the reminder fired {lateness.total_seconds() * 1000:.0f} ms after its time")
    assert lateness >= timedelta(0)
    await asyncio.sleep(3)
    assert len(system.reminder_rows(task["id"])) == 1
