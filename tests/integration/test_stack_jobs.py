"""Jobs scheduled through daprd's Jobs API fire back at the app, never early, and survive a
restart of the Dapr scheduler (its etcd data lives in the stack folder)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from devstack.procs import free_port
from devstack.scheduler import Scheduler
from devstack.stack import Stack

pytestmark = pytest.mark.integration


class JobApp:
    """An app that records every job callback (``POST /job/<name>``) with its arrival time."""

    def __init__(self) -> None:
        self.app = FastAPI()
        self.fired: list[tuple[str, float, Any]] = []
        self.event = threading.Event()

        @self.app.post("/job/{name}")
        async def on_job(name: str, request: Request) -> dict[str, str]:
            self.fired.append((name, time.time(), await request.json()))
            self.event.set()
            return {"status": "SUCCESS"}

    def wait(self, timeout: float) -> bool:
        return self.event.wait(timeout)


def _due_in(seconds: int) -> tuple[str, float]:
    """An RFC 3339 due time ``seconds`` from now (whole seconds) and its epoch value."""
    due = int(time.time()) + seconds + 1
    return datetime.fromtimestamp(due, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), float(due)


async def _schedule(sidecar_url: str, name: str, due_time: str, data: Any) -> None:
    async with httpx.AsyncClient(timeout=20) as client:
        resp = await client.post(f"{sidecar_url}/v1.0/jobs/{name}", json={"dueTime": due_time, "data": data})
        assert resp.status_code == 204, resp.text


async def test_job_fires_at_the_scheduling_app_not_before_due_time(
    sidecar_factory: Any, app_server_factory: Any, session_id: str
) -> None:
    jobs = JobApp()
    server = app_server_factory(jobs.app)
    sidecar = sidecar_factory(f"stack-jobs-{session_id}", server.port, wait_for="app")
    name = f"remind-{session_id}"
    due_text, due = _due_in(3)
    await _schedule(sidecar.http_url, name, due_text, {"task_id": 42})

    assert await asyncio.to_thread(jobs.wait, 60), "the job never fired"
    fired_name, fired_at, body = jobs.fired[0]
    assert fired_name == name
    assert body == {"task_id": 42}
    assert fired_at >= due, f"fired {due - fired_at:.3f}s early"
    print(f"job lateness: {fired_at - due:.3f}s")
    await asyncio.sleep(2)
    assert len(jobs.fired) == 1, jobs.fired  # a one-shot job fires once


@pytest.fixture
def private_scheduler(stack: Stack, tmp_path: Path) -> Iterator[Scheduler]:
    """A scheduler of its own (own ports, own etcd folder) that this test may restart."""
    cfg = replace(
        stack.cfg,
        state_dir=tmp_path / "stack",
        scheduler_port=free_port(),
        scheduler_healthz_port=free_port(),
        scheduler_etcd_client_port=free_port(),
        scheduler_etcd_peer_port=free_port(),
    )
    scheduler = Scheduler(cfg)
    scheduler.up()
    yield scheduler
    scheduler.down()


async def test_job_survives_a_scheduler_restart(
    sidecar_factory: Any, app_server_factory: Any, session_id: str, private_scheduler: Scheduler
) -> None:
    jobs = JobApp()
    server = app_server_factory(jobs.app)
    sidecar = sidecar_factory(
        f"stack-jobs-restart-{session_id}",
        server.port,
        wait_for="app",
        scheduler=private_scheduler.cfg.scheduler_address,
    )
    name = f"survivor-{session_id}"
    due_text, due = _due_in(12)
    await _schedule(sidecar.http_url, name, due_text, {"task_id": 7})

    first_pid = private_scheduler.status().pid
    private_scheduler.down()
    assert private_scheduler.status().pid is None
    private_scheduler.up()
    assert private_scheduler.status().pid not in (None, first_pid)

    async with httpx.AsyncClient(timeout=20) as client:  # still known after the restart
        for _ in range(50):
            resp = await client.get(f"{sidecar.http_url}/v1.0/jobs/{name}")
            if resp.status_code == 200:
                break
            await asyncio.sleep(0.2)  # daprd reconnects to the restarted scheduler
        assert resp.status_code == 200, resp.text
        assert resp.json()["name"] == name

    assert await asyncio.to_thread(jobs.wait, 90), "the job did not fire after the restart"
    fired_name, fired_at, body = jobs.fired[0]
    assert (fired_name, body) == (name, {"task_id": 7})
    assert fired_at >= due, f"fired {due - fired_at:.3f}s early"
