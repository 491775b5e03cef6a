"""Restarts in the middle of a stream of writes lose nothing and duplicate no effect: a consumer
process, its daprd, and the daprd a relay publishes through are restarted mid-stream."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest
import websockets
from sqlmodel import Session, col, func, select

from tasks.models import AuditEntry, Task
from tests.integration.events.support import EventSystem, wait_until_async

pytestmark = pytest.mark.integration

WRITES = 200
RECURRING_EVERY = 10  # every 10th write completes a recurring task (create + complete = 2 writes)


async def _stream(http: Any, count: int) -> list[int]:
    """``count`` writes; returns the ids of the recurring tasks it completed."""
    completed: list[int] = []
    n = 0
    while n < count:
        if n % RECURRING_EVERY == 0:
            task = (
                await http.post("/api/tasks", json={"title": f"repeat {n}", "recurrence": "weekly"})
            ).json()
            assert (await http.post(f"/api/tasks/{task['id']}/complete")).status_code == 200
            completed.append(task["id"])
            n += 2
        else:
            assert (await http.post("/api/tasks", json={"title": f"write {n}"})).status_code == 201
            n += 1
        await asyncio.sleep(0.04)  # about 10 s of writes: the restarts land in the middle
    return completed


async def test_restarting_consumers_and_sidecars_mid_stream_loses_and_duplicates_nothing(
    event_system: EventSystem, session_id: str
) -> None:
    system, erin = event_system, f"erin-{session_id}"
    seen: list[list[str]] = [[], []]

    async def watch(index: int, ws: Any) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in ws:
                message = json.loads(raw)
                if message["type"] == "task":
                    seen[index].append(message["id"])

    async with (
        websockets.connect(system.ws_url(erin)) as ws1,
        websockets.connect(system.ws_url(erin)) as ws2,
        system.http(erin) as http,
    ):
        watchers = [asyncio.create_task(watch(0, ws1)), asyncio.create_task(watch(1, ws2))]
        writer = asyncio.create_task(_stream(http, WRITES))
        await asyncio.sleep(1.0)
        await asyncio.to_thread(system.recurrence.stop_app)  # the consumer process dies ...
        await asyncio.sleep(1.0)
        await asyncio.to_thread(system.recurrence.start_app)  # ... and comes back
        await asyncio.to_thread(system.audit.restart_sidecar, down_for=1.0)
        await asyncio.to_thread(system.recurrence.restart_sidecar, down_for=1.0)  # its relay backs off
        completed = await writer

        def settled() -> bool:
            expected = len(system.outbox_ids(erin)) == WRITES + len(completed) and system.backlog() == 0
            return expected and len(system.audit_event_ids(erin)) == WRITES + len(completed)

        await wait_until_async(settled, "every event published and audited", limit=120)
        expected_ids = system.outbox_ids(erin)
        await wait_until_async(
            lambda: all(len(set(s)) == len(expected_ids) for s in seen), "sockets", limit=60
        )
        for task in watchers:
            task.cancel()

    assert sorted(system.audit_event_ids(erin)) == sorted(expected_ids)  # one entry per event
    for ids in seen:
        assert set(ids) == set(expected_ids) and len(ids) == len(expected_ids)  # every update, once
    with Session(system.engine) as session:
        nexts = session.exec(
            select(Task.previous_occurrence_id, func.count())
            .where(col(Task.previous_occurrence_id).in_(completed))
            .group_by(col(Task.previous_occurrence_id))
        ).all()
        audits = session.exec(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.user_id == erin)
        ).one()
    assert sorted(p or 0 for p, _ in nexts) == sorted(completed) and all(n == 1 for _, n in nexts)
    assert audits == len(expected_ids)
