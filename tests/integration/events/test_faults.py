"""Faults in the middle of a stream of 1,000 writes lose nothing and duplicate no effect.

On a private stack (its own PostgreSQL, Kafka and scheduler: Kafka is stopped here, which must
never happen to the shared stack), each role runs as ``todo-agent serve ROLE`` beside its own
daprd; with Dapr each role's outbox relay runs in a supervised child process of its app. While
four clients write over REST (creates, updates and completions of weekly tasks, and plain
creates), five faults happen one after the other, each with writes before, during and after it:

(a) **Kafka** stops for 2 s and starts again: the relays back off and catch up.
(b) **The api's daprd** restarts: the relay publishing through it backs off, and the api's
    per-replica broadcast group resumes where it stopped (the open sockets stay open).
(c) **The recurrence process** stops (SIGTERM to its process group: its relay finishes the
    round in progress and stops with it) and starts again.
(d) **The api process** stops gracefully (SIGTERM to its process group: requests in flight
    finish, its relay finishes its round and stops), stays down for 1 s and starts again on
    the same port; its daprd keeps running. No row may be published twice here: the hub skips
    repeats per connection, so a socket resumed after the restart would get one again.
    Meanwhile the clients behave like real ones: a write whose connection was refused never
    reached the api and is sent again; a write whose outcome is unknown (the connection broke
    after the request went out) is sent again only where that is safe: an update or completion
    repeated changes nothing and records no event, and a create is first looked up by its
    unique title in the database (it is sent again only if it is not there). Both WebSockets
    are closed by the stop and reconnect with ``?last_event_id=`` (the highest id they got).
(e) **The api's relay process** is killed outright (SIGKILL; its pid from the api's
    ``GET /metrics``, ``todo_relay_process_pid``): its supervisor starts another within about a second, which
    publishes the backlog; a row published but not yet marked sent is published again, and
    every consumer ignores the repeat (the sockets stay connected, so the hub skips it too).

Afterwards every write has exactly one audit entry, every completion exactly one next
occurrence, each of the two WebSockets got every update exactly once by event id (over two
connections or more, without a ``reset``), and nothing is left pending in the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
import websockets
from sqlmodel import Session, col, func, select

from devstack.stack import Stack
from tasks.models import AuditEntry, OutboxEvent, Task
from tests.integration.events.support import (
    EventSystem,
    PrivateStack,
    RoleProcess,
    kafka_stopped,
    scrape,
    wait_until_async,
)

pytestmark = pytest.mark.integration

WRITES = 1000
WRITERS = 4
PACE = 0.01  # seconds between one writer's units: the stream spans the faults
# (start the fault at this many writes, hold the writers at this many until it is over)
FAULT_WINDOWS = ((80, 220), (260, 400), (440, 580), (620, 760), (800, 940))
RETRY_FOR = 120.0  # seconds a client keeps sending a write the api refused (it restarts meanwhile)


@pytest.fixture
def faulty_system(private_stack: PrivateStack) -> Iterator[EventSystem]:
    system = private_stack.launcher.start_event_system(private_stack.ids, private_stack.brokers)
    yield system
    system.engine.dispose()


class Watcher:
    """One client's WebSocket: the task ids it was sent (every connection), reconnecting with
    ``?last_event_id=`` (the highest id seen) when the connection drops."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ids: list[str] = []
        self.connections = 0
        self.resets = 0
        self.out_of_order = 0  # ids that arrived after a higher one (a diagnostic, not a fault)
        self.connected = asyncio.Event()

    async def run(self) -> None:
        while True:
            url = self.url + (f"&last_event_id={max(map(int, self.ids))}" if self.ids else "")
            with contextlib.suppress(websockets.ConnectionClosed, websockets.InvalidHandshake, OSError):
                async with websockets.connect(url) as ws:
                    self.connections += 1
                    self.connected.set()
                    async for raw in ws:
                        message = json.loads(raw)
                        if message["type"] == "task":
                            if self.ids and int(message["id"]) < max(map(int, self.ids)):
                                self.out_of_order += 1
                            self.ids.append(message["id"])
                        elif message["type"] == "reset":
                            self.resets += 1
            await asyncio.sleep(0.2)


class Stream:
    """``WRITES`` writes by ``WRITERS`` concurrent clients: units of create + update + complete
    of a weekly task, every fourth unit a plain create. Writers wait at a fault's hold mark
    until the fault is over, so each fault has writes before, during and after it. A write
    the api refused is sent again; one whose outcome is unknown only where that is safe."""

    def __init__(self, http: httpx.AsyncClient, holds: list[tuple[int, asyncio.Event]], engine: Any) -> None:
        self.http, self.holds, self.engine = http, holds, engine
        self.reserved = self.done = self.units = 0
        self.completed: list[int] = []
        self.refused = 0  # attempts whose connection the api refused (it was down)
        self.unknown: list[str] = []  # writes whose outcome was unknown, and what was done

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
                await self._create(f"write {start}", None)
            await asyncio.sleep(PACE)

    async def _recurring(self, n: int) -> None:
        task_id = await self._create(f"repeat {n}", "weekly")
        await self._write("patch", f"/api/tasks/{task_id}", {"title": f"repeat {n} (renamed)"})
        await self._write("post", f"/api/tasks/{task_id}/complete", None)
        self.completed.append(task_id)

    async def _create(self, title: str, recurrence: str | None) -> int:
        """A create sent again after an unknown outcome would add a second task: look first."""
        body = {"title": title, "recurrence": recurrence} if recurrence else {"title": title}
        reply = await self._write("post", "/api/tasks", body, already_done=lambda: self._created(title))
        return int(reply["id"])

    async def _write(
        self, method: str, path: str, body: dict[str, Any] | None,
        already_done: Callable[[], Awaitable[dict[str, Any] | None]] | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        deadline = time.monotonic() + RETRY_FOR
        while True:
            try:
                response = await self.http.request(method, path, json=body)
            except httpx.ConnectError:  # refused: the request never reached the api
                self.refused += 1
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                # The connection broke with the request (maybe) sent. An update or completion
                # sent twice changes nothing the second time (no event): send it again. A
                # create is looked up once the api answers again (the process that may have
                # run it is gone or done by then).
                found = None
                if already_done is not None:
                    await self._until_the_api_answers(deadline)
                    found = await already_done()
                self.unknown.append(f"{method} {path}: {type(exc).__name__} -> "
                                    f"{'found, not sent again' if found else 'sent again'}")  # fmt: skip
                if found is not None:
                    self.done += 1
                    return found
            else:
                assert response.status_code in (200, 201), response.text
                self.done += 1
                reply: dict[str, Any] = response.json()
                return reply
            assert time.monotonic() < deadline, f"{method} {path}: the api did not answer for {RETRY_FOR}s"
            await asyncio.sleep(0.1)

    async def _until_the_api_answers(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if (await self.http.get("/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)

    async def _created(self, title: str) -> dict[str, Any] | None:
        def lookup() -> dict[str, Any] | None:
            with Session(self.engine) as session:
                ids = session.exec(select(Task.id).where(Task.title == title)).all()
            assert len(ids) <= 1, f"{title!r} was created {len(ids)} times"
            return {"id": ids[0]} if ids else None

        return await asyncio.to_thread(lookup)


async def _when(stream: Stream, writes: int) -> None:
    while stream.done < writes:  # noqa: ASYNC110 - a counter, polled
        await asyncio.sleep(0.05)


async def test_kafka_sidecar_consumer_api_and_relay_restarts_mid_stream_lose_and_duplicate_nothing(
    faulty_system: EventSystem, private_stack: PrivateStack, session_id: str
) -> None:
    system, erin = faulty_system, f"erin-{session_id}"
    holds = [(hold, asyncio.Event()) for _, hold in FAULT_WINDOWS]
    watchers = [Watcher(system.ws_url(erin)), Watcher(system.ws_url(erin))]
    timings: dict[str, float] = {}
    async with system.http(erin) as http:
        faults: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("kafka", lambda: _restart_kafka(private_stack.stack)),
            ("api daprd", lambda: asyncio.to_thread(system.api.restart_sidecar, down_for=1.0)),
            ("recurrence process", lambda: _restart_app(system.recurrence)),
            ("api process", lambda: _restart_app(system.api)),
            ("api relay process", lambda: _kill_relay(system)),
        ]
        watching = [asyncio.create_task(w.run()) for w in watchers]
        await asyncio.wait_for(asyncio.gather(*(w.connected.wait() for w in watchers)), 10)
        stream = Stream(http, holds, system.engine)
        writing = asyncio.create_task(stream.run())
        for (name, fault), (start, _), (_, over) in zip(faults, FAULT_WINDOWS, holds, strict=True):
            await _when(stream, start)
            began = time.monotonic()
            await fault()
            timings[name] = round(time.monotonic() - began, 1)
            over.set()
        await writing
        assert stream.done == WRITES
        assert stream.refused > 0, "no write met the api while it was down: the fault missed the stream"

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
        assert watcher.resets == 0 and watcher.connections >= 2  # the api restart closed them
        assert sorted(watcher.ids, key=int) == expected, (  # every update, once, by event id
            f"{len(watcher.ids)} received over {watcher.connections} connection(s), "
            f"{len(expected)} expected; missing {sorted(set(expected) - set(watcher.ids), key=int)[:10]}, "
            f"twice {sorted({i for i in watcher.ids if watcher.ids.count(i) > 1}, key=int)[:10]}; "
            f"{watcher.out_of_order} arrived after a higher id; faults took {timings}; "
            f"writes of unknown outcome: {stream.unknown}"
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
    async with kafka_stopped(stack):
        await asyncio.sleep(2.0)  # writes go on meanwhile; the relays back off


async def _restart_app(role: RoleProcess) -> None:
    """SIGTERM (requests in flight finish; the relay stops with the app), down 1 s, start again
    on the same port beside the same daprd."""
    await asyncio.to_thread(role.stop_app)
    await asyncio.sleep(1.0)
    await asyncio.to_thread(role.start_app)


async def _kill_relay(system: EventSystem) -> None:
    """SIGKILL the api's relay process (a child of the api we started) and wait for the next."""

    def relay() -> dict[str, float | None]:
        found = scrape(system.api.url)  # the relay child's up, restarts and pid
        return {name: found.value(f"todo_relay_process_{name}") for name in ("up", "restarts_total", "pid")}

    before = await asyncio.to_thread(relay)
    assert system.api.proc is not None and before["up"] == 1 and before["pid"] is not None, before
    pid = int(before["pid"])
    assert _parent_of(pid) == system.api.proc.pid  # ours to kill
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while (now := await asyncio.to_thread(relay))["restarts_total"] == before["restarts_total"] or now[
        "up"
    ] != 1:
        assert time.monotonic() < deadline, f"no new relay process 30 s after the kill: {now}"
        await asyncio.sleep(0.2)
    assert now["pid"] is not None and now["pid"] != pid


def _parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])
