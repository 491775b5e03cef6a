"""Faults in the middle of a stream of 1,000 writes lose nothing and duplicate no effect.

On a private stack (its own PostgreSQL, Kafka and scheduler: Kafka is stopped here, which must
never happen to the shared stack), each role runs as ``todo-agent serve ROLE`` beside its own
daprd. While the writes (creates, updates and completions of recurring tasks, over REST) go
on: (a) Kafka stops and starts again, (b) the api's daprd restarts (the relay publishing
through it backs off; its per-replica broadcast group resumes where it stopped), (c) the
recurrence consumer process dies and comes back. Afterwards every write has exactly one audit
entry, every completion exactly one next occurrence, each of two WebSockets opened before
the stream got every update exactly once by event id (a dropped socket reconnects with
``?last_event_id=`` like a real client), and nothing is left pending in the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import websockets
from psycopg import sql
from sqlmodel import Session, col, func, select

from devstack.components import render
from devstack.postgres import sqlalchemy_url
from devstack.stack import Stack
from tasks.db import make_engine, migrate
from tasks.models import AuditEntry, OutboxEvent, Task
from tests.integration.events.support import (
    BROADCAST_COMPONENT,
    SUBSCRIPTIONS,
    AppIds,
    EventSystem,
    RoleLauncher,
    wait_until_async,
)
from tests.integration.kafka_support import wait_for_consumer_group

pytestmark = pytest.mark.integration

WRITES = 1000
WRITERS = 4
PACE = 0.01  # seconds between one writer's units: the stream spans the faults
# (start the fault at this many writes, hold the writers at this many until it is over)
FAULT_WINDOWS = ((100, 350), (400, 600), (650, 850))


@pytest.fixture
def faulty_system(
    isolated_stack: Stack, session_id: str, tmp_path: Path, sidecar_factory: Any, stack_log_dir: Path
) -> Iterator[EventSystem]:
    admin = isolated_stack.postgres.admin_url()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier("todo_faults")))
    pg_url = sqlalchemy_url(f"{admin.rsplit('/', 1)[0]}/todo_faults")
    brokers = isolated_stack.cfg.kafka_brokers
    ids = AppIds(api=f"todo-api-f{session_id}", recurrence=f"todo-recurrence-f{session_id}",
                 audit=f"todo-audit-f{session_id}")  # fmt: skip
    resources = render(tmp_path / "dapr", kafka_brokers=brokers, pg_url=pg_url, subscriptions=False,
        extra={
            "subscriptions.yaml": SUBSCRIPTIONS.format(**vars(ids)),
            "kafka-pubsub-broadcast.yaml": BROADCAST_COMPONENT.format(brokers=brokers, api=ids.api),
        },
    )  # fmt: skip
    engine = make_engine(pg_url)
    migrate(engine)
    engine.dispose()
    scheduler = isolated_stack.cfg.scheduler_address
    launcher = RoleLauncher(resources=resources, pg_url=pg_url, sidecar_factory=sidecar_factory,
                            log_dir=stack_log_dir, scheduler=scheduler)  # fmt: skip
    try:
        api = launcher.start("api", ids.api)
        recurrence = launcher.start("recurrence", ids.recurrence)
        audit = launcher.start("audit", ids.audit)
        for group in (ids.recurrence, ids.audit):
            wait_for_consumer_group(brokers, group)
        system = EventSystem(api=api, recurrence=recurrence, audit=audit, kafka_brokers=brokers,
                             pg_url=pg_url)  # fmt: skip
        system.wait_for_live_updates()
        yield system
        system.engine.dispose()
    finally:
        launcher.stop_all()


class Watcher:
    """One client's WebSocket: the task ids it was sent (every connection), reconnecting with
    ``?last_event_id=`` (the highest id seen) when the connection drops."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ids: list[str] = []
        self.connections = 0
        self.resets = 0
        self.connected = asyncio.Event()

    async def run(self) -> None:
        while True:
            url = self.url + (f"&last_event_id={max(map(int, self.ids))}" if self.ids else "")
            with contextlib.suppress(websockets.ConnectionClosed, OSError):
                async with websockets.connect(url) as ws:
                    self.connections += 1
                    self.connected.set()
                    async for raw in ws:
                        message = json.loads(raw)
                        if message["type"] == "task":
                            self.ids.append(message["id"])
                        elif message["type"] == "reset":
                            self.resets += 1
            await asyncio.sleep(0.2)


class Stream:
    """``WRITES`` writes by ``WRITERS`` concurrent clients: units of create + update + complete
    of a weekly task, every fourth unit a plain create. Writers wait at a fault's hold mark
    until the fault is over, so each fault has writes before, during and after it."""

    def __init__(self, http: Any, holds: list[tuple[int, asyncio.Event]]) -> None:
        self.http, self.holds = http, holds
        self.reserved = self.done = self.units = 0
        self.completed: list[int] = []

    async def run(self) -> None:
        await asyncio.gather(*(self._writer() for _ in range(WRITERS)))

    async def _writer(self) -> None:
        while self.reserved < WRITES:
            start, recurring = self.reserved, self.units % 4 != 3 and self.reserved + 3 <= WRITES
            self.reserved += 3 if recurring else 1
            self.units += 1
            for mark, over in self.holds:
                if self.reserved > mark:
                    await over.wait()
            if recurring:
                await self._recurring(start)
            else:
                await self._write("post", "/api/tasks", {"title": f"write {start}"})
            await asyncio.sleep(PACE)

    async def _recurring(self, n: int) -> None:
        task = await self._write("post", "/api/tasks", {"title": f"repeat {n}", "recurrence": "weekly"})
        await self._write("patch", f"/api/tasks/{task['id']}", {"title": f"repeat {n} (renamed)"})
        await self._write("post", f"/api/tasks/{task['id']}/complete", None)
        self.completed.append(task["id"])

    async def _write(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        response = await self.http.request(method, path, json=body)
        assert response.status_code in (200, 201), response.text
        self.done += 1
        reply: dict[str, Any] = response.json()
        return reply


async def _when(stream: Stream, writes: int) -> None:
    while stream.done < writes:  # noqa: ASYNC110 - a counter, polled
        await asyncio.sleep(0.05)


async def test_kafka_the_api_sidecar_and_a_consumer_restarting_mid_stream_lose_and_duplicate_nothing(
    faulty_system: EventSystem, isolated_stack: Stack, session_id: str
) -> None:
    system, erin = faulty_system, f"erin-{session_id}"
    faults: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("kafka", lambda: _restart_kafka(isolated_stack)),
        ("api daprd", lambda: asyncio.to_thread(system.api.restart_sidecar, down_for=1.0)),
        ("recurrence process", lambda: _restart_app(system)),
    ]
    holds = [(hold, asyncio.Event()) for _, hold in FAULT_WINDOWS]
    watchers = [Watcher(system.ws_url(erin)), Watcher(system.ws_url(erin))]
    timings: dict[str, float] = {}
    async with system.http(erin) as http:
        watching = [asyncio.create_task(w.run()) for w in watchers]
        await asyncio.wait_for(asyncio.gather(*(w.connected.wait() for w in watchers)), 10)
        stream = Stream(http, holds)
        writing = asyncio.create_task(stream.run())
        for (name, fault), (start, _), (_, over) in zip(faults, FAULT_WINDOWS, holds, strict=True):
            await _when(stream, start)
            began = time.monotonic()
            await fault()
            timings[name] = round(time.monotonic() - began, 1)
            over.set()
        await writing
        assert stream.done == WRITES

        def settled() -> bool:
            return system.backlog() == 0 and len(system.audit_event_ids(erin)) == len(
                system.outbox_ids(erin)
            ) == WRITES + len(stream.completed)  # each completion's next occurrence: one more

        await wait_until_async(settled, f"every event published and audited (faults took {timings})",
                               limit=120)  # fmt: skip
        expected = system.outbox_ids(erin)  # task events go to task-updates as well
        await wait_until_async(lambda: all(len(w.ids) >= len(expected) for w in watchers),
                               "every update on both sockets", limit=60)  # fmt: skip
        await asyncio.sleep(0.5)  # a duplicate would come now
        for task in watching:
            task.cancel()

    assert sorted(system.audit_event_ids(erin)) == sorted(system.outbox_ids(erin))  # one entry each
    for watcher in watchers:
        assert watcher.resets == 0
        assert sorted(watcher.ids, key=int) == expected, (  # every update, once, by event id
            f"{len(watcher.ids)} received over {watcher.connections} connection(s), "
            f"{len(expected)} expected; missing {sorted(set(expected) - set(watcher.ids), key=int)[:10]}"
        )
    with Session(system.engine) as session:
        nexts = dict(
            session.exec(
                select(Task.previous_occurrence_id, func.count())
                .where(col(Task.previous_occurrence_id).in_(stream.completed))
                .group_by(col(Task.previous_occurrence_id))
            ).all()
        )
        audits = session.exec(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.user_id == erin)
        ).one()
        unsent = session.exec(
            select(func.count()).select_from(OutboxEvent).where(col(OutboxEvent.published_at).is_(None))
        ).one()
    assert sorted(p or 0 for p in nexts) == sorted(stream.completed) and set(nexts.values()) == {1}
    assert audits == WRITES + len(stream.completed) and unsent == 0


async def _restart_kafka(stack: Stack) -> None:
    await asyncio.to_thread(stack.kafka.down)
    await asyncio.sleep(2.0)  # writes go on meanwhile; the relays back off
    await asyncio.to_thread(stack.kafka.up)


async def _restart_app(system: EventSystem) -> None:
    await asyncio.to_thread(system.recurrence.stop_app)
    await asyncio.sleep(1.0)
    await asyncio.to_thread(system.recurrence.start_app)
