"""Every role stops within its grace period after SIGTERM, also while a request or delivery waits.

Each role runs as ``todo-agent serve ROLE`` beside its own daprd (with Dapr each role but audit
runs its outbox relay in a child process). A role is made busy where it cannot finish on its
own: a table its work writes to is locked (``LOCK TABLE ... ACCESS EXCLUSIVE`` in another
transaction, held until the role is gone), then work is sent: a REST rename to the api (with a
WebSocket open), a completion the recurrence and audit consumers receive, a due reminder for
the notifications consumer. Once a query of the role waits on the lock, the app process alone
gets SIGTERM, as a container's main process does. It must exit within
``TODO_SHUTDOWN_GRACE_SECONDS`` (set short here), and its relay child (which ignores SIGTERM and
stops when its app's pipe closes) soon after; the lock is released only afterwards, and the
waiting change is then either whole or absent. The times are printed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import websockets

from devstack.components import RenderedResources, render, subscriptions_for
from devstack.postgres import libpq_url
from devstack.procs import pid_alive
from tasks.clock import utc_now
from tasks.db import make_engine, migrate
from tasks.events import ReminderDue
from tasks.unit_of_work import UnitOfWorkFactory
from tests.integration.events.support import (
    BROADCAST_COMPONENT,
    RoleLauncher,
    RoleProcess,
    launching,
)
from tests.integration.kafka_support import wait_for_consumer_group

pytestmark = pytest.mark.integration

GRACE = 8.0  # TODO_SHUTDOWN_GRACE_SECONDS for these processes
SLACK = 2.0  # the process's own teardown after the deadline, and this test's polling
RELAY_AFTER = 10.0  # a relay child ends when its app's pipe closes, after its round (at most ~5 s)


@pytest.fixture(scope="module")
def shutdown_ids(session_id: str) -> dict[str, str]:
    roles = ("api", "recurrence", "audit", "notifications")
    return {f"todo-{role}": f"todo-{role}-sd{session_id}" for role in roles}


@pytest.fixture(scope="module")
def shutdown_resources(
    kafka_brokers: str, pg_url: str, shutdown_ids: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> RenderedResources:
    resources = render(
        tmp_path_factory.mktemp("dapr-shutdown"), kafka_brokers=kafka_brokers, pg_url=pg_url,
        subscriptions=False,
        extra={
            "subscriptions.yaml": subscriptions_for(shutdown_ids),
            "kafka-pubsub-broadcast.yaml": BROADCAST_COMPONENT.format(
                brokers=kafka_brokers, api=shutdown_ids["todo-api"]),
        },
    )  # fmt: skip
    pubsub = resources.path / "kafka-pubsub.yaml"
    pubsub.write_text(pubsub.read_text().replace('value: "oldest"', 'value: "newest"'))
    engine = make_engine(pg_url)
    migrate(engine)
    engine.dispose()
    return resources


@pytest.fixture
def launcher(
    shutdown_resources: RenderedResources, pg_url: str, sidecar_factory: Any, stack_log_dir: Path
) -> Iterator[RoleLauncher]:
    with launching(shutdown_resources, pg_url, sidecar_factory, stack_log_dir) as launcher:
        yield launcher


def _start(launcher: RoleLauncher, ids: dict[str, str], role: str) -> RoleProcess:
    return launcher.start(role, ids[f"todo-{role}"], extra_env={"TODO_SHUTDOWN_GRACE_SECONDS": str(GRACE)})


class TableLock:
    """``LOCK TABLE <name>`` held in an open transaction of another connection."""

    def __init__(self, pg_url: str, table: str) -> None:
        self.conn = psycopg.connect(libpq_url(pg_url))
        self.conn.execute(f"lock table {table} in access exclusive mode")

    def waiters(self) -> int:
        """Queries of this database waiting for a lock (the shared server has other databases)."""
        with psycopg.connect(self.conn.info.dsn, autocommit=True) as other:
            row = other.execute(
                "select count(*) from pg_locks l join pg_stat_activity a on a.pid = l.pid"
                " where not l.granted and a.datname = current_database()"
            ).fetchone()
        return int(row[0]) if row else 0

    def release(self) -> None:
        self.conn.rollback()
        self.conn.close()


def _sigterm_and_time(process: RoleProcess) -> tuple[float, int | None, float | None]:
    """SIGTERM to the app process alone: (seconds until it exited, its exit code, seconds until
    its relay child had exited too, None if that took more than ``RELAY_AFTER`` after the app)."""
    assert process.proc is not None
    relay = _children(process.proc.pid)
    began = time.monotonic()
    os.kill(process.proc.pid, signal.SIGTERM)
    deadline = began + GRACE + 30
    while process.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    took = time.monotonic() - began
    code = process.proc.poll()
    if code is None:  # it ignored SIGTERM: do not leave it behind
        os.kill(process.proc.pid, signal.SIGKILL)
        process.proc.wait(10)
    while any(pid_alive(p) for p in relay) and time.monotonic() < began + took + RELAY_AFTER:
        time.sleep(0.05)
    relay_took = None if any(pid_alive(p) for p in relay) else time.monotonic() - began
    return took, code, relay_took


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        found += [int(p) for p in children.read_text().split()]
    return found


def _until_waiting(lock: TableLock, what: str, limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    while lock.waiters() == 0:
        assert time.monotonic() < deadline, f"{what} never waited on the lock"
        time.sleep(0.1)


def _assert_stopped_in_time(role: str, took: float, code: int | None, relay_took: float | None) -> None:
    relay = f"{relay_took:.2f}s" if relay_took is not None else f"not within {RELAY_AFTER}s of the app"
    print(f"{role}: exited {took:.2f}s after SIGTERM (code {code}); its relay child after {relay}")
    assert code is not None, f"the {role} process ignored SIGTERM for {took:.0f}s (grace {GRACE}s)"
    assert took <= GRACE + SLACK, f"the {role} process took {took:.1f}s to exit (grace {GRACE}s)"
    assert relay_took is not None, f"the {role} process's relay child outlived it by {RELAY_AFTER}s"


async def test_api_exits_within_its_grace_period_while_a_write_waits_on_a_lock(
    launcher: RoleLauncher, shutdown_ids: dict[str, str], pg_url: str
) -> None:
    api = _start(launcher, shutdown_ids, "api")
    headers = {"authorization": f"Bearer {_token('sd-amy')}"}
    async with httpx.AsyncClient(base_url=api.url, headers=headers, timeout=60) as http:
        task = (await http.post("/api/tasks", json={"title": "before"})).json()
        socket = await websockets.connect(f"ws://127.0.0.1:{api.port}/ws?token={_token('sd-amy')}")
        lock = TableLock(pg_url, "tasks")
        try:
            rename = asyncio.create_task(http.patch(f"/api/tasks/{task['id']}", json={"title": "after"}))
            await asyncio.to_thread(_until_waiting, lock, "the rename")
            took, code, relay_took = await asyncio.to_thread(_sigterm_and_time, api)
        finally:
            lock.release()
        outcome = await asyncio.gather(rename, return_exceptions=True)
        await socket.close()
    _assert_stopped_in_time("api", took, code, relay_took)
    print(f"the waiting rename got: {outcome[0]!r}")
    with psycopg.connect(libpq_url(pg_url)) as conn:  # whole or absent: the title and its event together
        row = conn.execute(
            "select title, (select count(*) from outbox where task_id = tasks.id"
            " and event_type = 'todo.task.updated.v1') from tasks where id = %s",
            (int(task["id"]),),
        ).fetchone()
    assert row is not None
    title, events = row
    assert (title, events) in (("before", 0), ("after", 1))


@pytest.mark.parametrize("role", ["recurrence", "audit"])
async def test_a_consumer_exits_within_its_grace_period_while_a_delivery_waits_on_a_lock(
    launcher: RoleLauncher, shutdown_ids: dict[str, str], pg_url: str, kafka_brokers: str, role: str
) -> None:
    api = _start(launcher, shutdown_ids, "api")
    consumer = _start(launcher, shutdown_ids, role)
    wait_for_consumer_group(kafka_brokers, shutdown_ids[f"todo-{role}"])
    headers = {"authorization": f"Bearer {_token('sd-bob')}"}
    lock = TableLock(pg_url, "processed_events")
    try:
        async with httpx.AsyncClient(base_url=api.url, headers=headers, timeout=60) as http:
            task = (await http.post("/api/tasks", json={"title": "weekly", "recurrence": "weekly"})).json()
            assert (await http.post(f"/api/tasks/{task['id']}/complete")).status_code == 200
        await asyncio.to_thread(_until_waiting, lock, f"the {role} consumer")
        took, code, relay_took = await asyncio.to_thread(_sigterm_and_time, consumer)
    finally:
        lock.release()
    _assert_stopped_in_time(role, took, code, relay_took)


async def test_notifications_exits_within_its_grace_period_while_a_reminder_waits_on_a_lock(
    launcher: RoleLauncher, shutdown_ids: dict[str, str], pg_url: str, kafka_brokers: str
) -> None:
    _start(launcher, shutdown_ids, "api")  # its relay publishes the reminder
    notifications = _start(launcher, shutdown_ids, "notifications")
    wait_for_consumer_group(kafka_brokers, shutdown_ids["todo-notifications"])
    lock = TableLock(pg_url, "notifications")
    try:
        engine = make_engine(pg_url)
        with UnitOfWorkFactory(engine)() as unit:
            now = utc_now()
            due = now - timedelta(seconds=1)
            unit.record(ReminderDue(user_id="sd-cy", task_id=1, title="call", remind_at=due, timestamp=now))
            unit.commit()
        engine.dispose()
        await asyncio.to_thread(_until_waiting, lock, "the notifications consumer")
        took, code, relay_took = await asyncio.to_thread(_sigterm_and_time, notifications)
    finally:
        lock.release()
    _assert_stopped_in_time("notifications", took, code, relay_took)


def _token(user: str) -> str:
    from auth.tokens import JwtVerifier
    from tests.conftest import JWT_SECRET

    return JwtVerifier(secret=JWT_SECRET, audience="todo-agent").issue(user, ttl=3600)
