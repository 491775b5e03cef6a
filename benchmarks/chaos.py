"""Chaos at scale: N writes through the real stack while its processes are SIGKILLed and restarted.

    python -m benchmarks.chaos                          # 10,000 writes, every kind of kill, twice
    python -m benchmarks.chaos --writes 1000 --rounds 1 # one kill of each kind

On a private stack (its own PostgreSQL, Kafka and Dapr scheduler under /tmp on free ports:
Kafka is killed here, which must never happen to a shared stack) the four roles run as
``todo-agent serve ROLE`` processes, each beside its own daprd (each role with a relay runs
it in a child process). Several clients write concurrently, half over REST and half over MCP
(streamable HTTP): units of create + rename + complete of a weekly task (the recurrence role
creates the next occurrence), and plain creates, every tenth with a reminder a few seconds
ahead (the scheduler calls the api back, the notifications role delivers it in-app, and the
notification reaches the sockets). Two WebSockets per user are open all along.

The kills, spread evenly over the writes, one at a time: SIGKILL (no warning, nothing drained)
to the api process, the api's daprd, the recurrence, audit and notifications processes, their
daprds, and Kafka; each is started again after ``--down`` seconds. A killed app's relay child
is orphaned: it must notice and exit on its own. After each restart a probe (a weekly task
created and completed by another user) must come through end to end: on that user's socket,
in the audit log, its next occurrence created, and a reminder set two seconds ahead notified
on that socket; ``recovered_s`` is from the kill to then.

**What "0 lost" means: the client contract.** Every write carries a client-generated key
(``[k123]`` in the title; renames keep it). A client sends a write until it gets a 2xx answer:

- the connection was refused (the api was down): the request never arrived; send it again;
- the outcome is unknown (the connection broke after the request went out, or a 5xx): a
  rename or completion is sent again (repeating it changes nothing and records no event); a
  create is first looked up by its key (``GET /api/tasks?search=[k123]``) once the api answers,
  and sent again only when it is not there.

So every write ends acknowledged (or is counted as given up after ``RETRY_FOR`` seconds), and
the checks look at every key, acknowledged or not: exactly one task per key (0: lost; 2: a
create applied twice), each renamed and completed as its writer acknowledged, exactly one next
occurrence per completion, one outbox row per write that changed something (so none applied
twice), every row published, exactly one audit entry per ``task-events`` row, each reminder
sent once with one in-app notification. **A socket** keeps the highest event id it has seen,
reconnects with ``?last_event_id=<that id>`` when the connection drops, and ignores an id it
already has (the server replays what the user missed since that id, from the outbox; one
user's ids grow in commit order). Per socket, ``missing`` counts the user's ``task-updates``
rows it never got and ``wire_repeats`` the messages it had to ignore; a ``reset`` (more missed
than the server replays) would count as lost.

The last line printed is one JSON object of figures (see ``figures``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import websockets
from mcp.types import LATEST_PROTOCOL_VERSION
from sqlalchemy import Engine, text

from devstack.components import RenderedResources, render
from devstack.procs import free_port, http_status, pid_alive, spawn, stop_pid, wait_until
from devstack.sidecar import Sidecar, pod_name, start_sidecar

JWT_SECRET = "chaos-secret-that-is-long-enough-for-hs256-0123456789"
APP_TOKEN = "chaos-app-token"
TODO_AGENT = str(Path(sys.executable).with_name("todo-agent"))
ROLES = ("api", "recurrence", "notifications", "audit")
KINDS = ("api", "api-daprd", "recurrence", "audit", "notifications", "kafka",
         "recurrence-daprd", "audit-daprd", "notifications-daprd")  # fmt: skip
RETRY_FOR = 180.0  # seconds a client keeps sending one write before it gives up (counted)
PROBE_USER = "chaos-probe"


# -- the system under test ---------------------------------------------------------------------
@dataclass
class RoleProcess:
    """``todo-agent serve ROLE`` beside its own daprd; either is SIGKILLed and started again
    (the app on the same port, daprd with the same ports and pod name)."""

    role: str
    port: int
    env: dict[str, str]
    resources: RenderedResources
    scheduler: str
    log_dir: Path
    sidecar: Sidecar | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def app_id(self) -> str:
        return f"todo-{self.role}"

    def start(self) -> None:
        self.sidecar = start_sidecar(
            app_id=self.app_id, app_port=self.port, resources_path=self.resources.path,
            config=self.resources.config, scheduler_address=self.scheduler, log_dir=self.log_dir,
            extra_env=dict(self.resources.env), app_api_token=APP_TOKEN, wait_for="outbound",
        )  # fmt: skip
        self.start_app()
        self.sidecar.wait_ready("app", timeout=90)

    def start_app(self) -> None:
        assert self.sidecar is not None
        log = self.log_dir / f"{self.role}.log"
        args = [TODO_AGENT, "serve", self.role, "--port", str(self.port)]
        self.proc = spawn(args, log_path=log, env={**os.environ, **self.env, **self.sidecar.app_env()})
        wait_until(lambda: http_status(f"{self.url}/healthz") == 200, what=f"the {self.role} app",
                   timeout=90, log_path=log, proc=self.proc)  # fmt: skip

    def relay_pid(self) -> int | None:
        """The app's relay child (none for audit): a child process started by ``multiprocessing``."""
        if self.proc is None:
            return None
        for children in Path(f"/proc/{self.proc.pid}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                for pid in children.read_text().split():
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                    if b"multiprocessing" in cmdline and b"resource_tracker" not in cmdline:
                        return int(pid)
        return None

    def kill_app(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)  # the app alone: its relay child is orphaned
        self.proc.wait(10)

    def kill_sidecar(self) -> None:
        assert self.sidecar is not None
        os.kill(self.sidecar.pid, signal.SIGKILL)
        self.sidecar.proc.wait(10)

    def start_sidecar_again(self) -> None:
        old = self.sidecar
        assert old is not None
        env = {k: v for k, v in os.environ.items() if k not in ("APP_API_TOKEN", "DAPR_API_TOKEN")}
        env.update({**self.resources.env, "DAPR_HOST_IP": "127.0.0.1", "APP_API_TOKEN": APP_TOKEN,
                    "POD_NAME": pod_name(old.app_id, old.app_port, old.http_port)})  # fmt: skip
        proc = spawn([str(a) for a in old.proc.args], log_path=old.log_path, env=env)  # type: ignore[union-attr]
        self.sidecar = replace(old, proc=proc)
        self.sidecar.wait_ready("app", timeout=120)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_pid(self.proc.pid, timeout=30)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
        if self.sidecar is not None:
            self.sidecar.stop()


@dataclass
class System:
    stack: Any  # devstack.stack.Stack (private)
    pg_url: str
    engine: Engine
    roles: dict[str, RoleProcess]

    @property
    def api(self) -> RoleProcess:
        return self.roles["api"]

    def token(self, user: str) -> str:
        from auth.tokens import JwtVerifier

        return JwtVerifier(secret=JWT_SECRET, audience="todo-agent").issue(user, ttl=6 * 3600)

    def query(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(sql), params).all())


@contextlib.contextmanager
def private_stack(folder: Path) -> Iterator[Any]:
    """PostgreSQL, Kafka and the scheduler in ``folder`` on free ports, purged at the end."""
    from devstack.config import StackConfig
    from devstack.stack import Stack

    folder.mkdir(parents=True, exist_ok=True)
    for place in (folder, *folder.parents[:1]):
        place.chmod(0o755)  # as root, the postgres OS user must reach it
    cfg = replace(
        StackConfig.from_env(), state_dir=folder, pg_port=free_port(), kafka_port=free_port(),
        kafka_controller_port=free_port(), scheduler_port=free_port(), scheduler_healthz_port=free_port(),
        scheduler_etcd_client_port=free_port(), scheduler_etcd_peer_port=free_port(),
        external_database_url=None, external_kafka_brokers=None,
    )  # fmt: skip
    stack = Stack(cfg)
    try:
        stack.up(progress=False)
        yield stack
    finally:
        stack.purge()


@contextlib.contextmanager
def running_system(stack: Any, log_dir: Path) -> Iterator[System]:
    """A fresh database on ``stack`` and the four roles beside their daprds, stopped at the end."""
    import psycopg
    from psycopg import sql

    from devstack.postgres import sqlalchemy_url
    from tasks.db import make_engine, migrate

    admin = stack.postgres.admin_url()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("create database todo_chaos"))
    pg_url = sqlalchemy_url(f"{admin.rsplit('/', 1)[0]}/todo_chaos")
    engine = make_engine(pg_url)
    migrate(engine)
    resources = render(log_dir / "dapr", kafka_brokers=stack.cfg.kafka_brokers, pg_url=pg_url)
    env = {"TODO_DATABASE_URL": pg_url, "TODO_JWT_SECRET": JWT_SECRET, "APP_API_TOKEN": APP_TOKEN,
           "TODO_TIMEZONE": "UTC", "TODO_LOG_LEVEL": "INFO"}  # fmt: skip
    roles = {role: RoleProcess(role=role, port=free_port(), env=env, resources=resources,
                               scheduler=stack.cfg.scheduler_address, log_dir=log_dir)
             for role in ROLES}  # fmt: skip
    try:
        for role in roles.values():
            role.start()
        yield System(stack=stack, pg_url=pg_url, engine=engine, roles=roles)
    finally:
        for role in reversed(list(roles.values())):
            role.stop()
        engine.dispose()


# -- the clients ---------------------------------------------------------------------------------
class Outcome(Exception):
    """A write whose outcome the client cannot know (the connection broke, or a 5xx)."""


@dataclass
class ClientStats:
    acked: int = 0
    refused: int = 0  # attempts the api refused (down): sent again
    unknown: int = 0  # attempts of unknown outcome
    found_after_unknown: int = 0  # creates of unknown outcome that were there: not sent again
    server_errors: int = 0  # 5xx answers (unknown outcomes too)
    given_up: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # 4xx: a bug in the client or the api


class Client:
    """One user's writes over REST or MCP, with the retry rules of the module docstring."""

    def __init__(self, system: System, user: str, via: str, stats: ClientStats) -> None:
        self.user, self.via, self.stats = user, via, stats
        headers = {"authorization": f"Bearer {system.token(user)}"}
        self.http = httpx.AsyncClient(base_url=system.api.url, headers=headers, timeout=60)
        self._ids = iter(range(1, 1 << 62))

    async def aclose(self) -> None:
        await self.http.aclose()

    async def create(self, key: str, title: str, recurrence: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"title": f"{key} {title}"}
        if recurrence:
            body["recurrence"] = recurrence
        return await self._until_acked(lambda: self._send("add_task", "post", "/api/tasks", body),
                                       key=key)  # fmt: skip

    async def rename(self, task_id: int, title: str) -> dict[str, Any]:
        return await self._until_acked(lambda: self._send(
            "update_task", "patch", f"/api/tasks/{task_id}", {"title": title}, task_id=task_id))  # fmt: skip

    async def complete(self, task_id: int) -> dict[str, Any]:
        return await self._until_acked(
            lambda: self._send(
                "complete_task", "post", f"/api/tasks/{task_id}/complete", None, task_id=task_id
            )
        )

    async def remind(self, task_id: int, at: datetime) -> dict[str, Any]:
        when = at.isoformat()
        return await self._until_acked(lambda: self._send(
            "set_reminder", "put", f"/api/tasks/{task_id}/reminder", {"at": when}, task_id=task_id,
            tool_args={"at": when}))  # fmt: skip

    async def _until_acked(
        self, send: Callable[[], Awaitable[dict[str, Any]]], key: str | None = None
    ) -> dict[str, Any]:
        deadline = time.monotonic() + RETRY_FOR
        while time.monotonic() < deadline:
            try:
                reply = await send()
            except httpx.ConnectError:
                self.stats.refused += 1
            except Outcome:
                self.stats.unknown += 1
                if key is not None:  # a create: look before sending it again
                    found = await self._lookup(key, deadline)
                    if found is not None:
                        self.stats.found_after_unknown += 1
                        self.stats.acked += 1
                        return found
            else:
                self.stats.acked += 1
                return reply
            await asyncio.sleep(0.1)
        self.stats.given_up.append(key or "a rename, completion or reminder")
        raise TimeoutError(f"gave up after {RETRY_FOR}s")

    async def _send(
        self, tool: str, method: str, path: str, body: dict[str, Any] | None,
        task_id: int | None = None, tool_args: dict[str, Any] | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        try:
            if self.via == "rest":
                response = await self.http.request(method, path, json=body)
            else:
                arguments = {**(body or {}), **(tool_args or {})}
                if task_id is not None:
                    arguments["task_id"] = task_id
                response = await self.http.post(
                    "/mcp", json=self._rpc(tool, arguments), headers=self._mcp_headers(tool)
                )
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, httpx.TimeoutException) as exc:
            raise Outcome(type(exc).__name__) from exc
        if response.status_code >= 500:
            self.stats.server_errors += 1
            raise Outcome(f"HTTP {response.status_code}")
        if response.status_code >= 400:
            self.stats.rejected.append(f"{method} {path}: {response.status_code} {response.text[:200]}")
            raise AssertionError(self.stats.rejected[-1])
        if self.via == "rest":
            reply: dict[str, Any] = response.json()
            return reply
        return self._tool_result(tool, response.json())

    def _rpc(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        meta = {"io.modelcontextprotocol/protocolVersion": LATEST_PROTOCOL_VERSION,
                "io.modelcontextprotocol/clientInfo": {"name": "benchmarks.chaos", "version": "1"},
                "io.modelcontextprotocol/clientCapabilities": {}}  # fmt: skip
        return {"jsonrpc": "2.0", "id": next(self._ids), "method": "tools/call",
                "params": {"name": tool, "arguments": arguments, "_meta": meta}}  # fmt: skip

    @staticmethod
    def _mcp_headers(tool: str) -> dict[str, str]:
        return {"accept": "application/json, text/event-stream", "mcp-method": "tools/call",
                "mcp-protocol-version": LATEST_PROTOCOL_VERSION, "mcp-name": tool}  # fmt: skip

    def _tool_result(self, tool: str, answer: dict[str, Any]) -> dict[str, Any]:
        result = answer.get("result") or {}
        content = result.get("structuredContent")
        if "error" in answer or result.get("isError") or not isinstance(content, dict):
            self.stats.rejected.append(f"{tool}: {str(answer)[:300]}")
            raise AssertionError(self.stats.rejected[-1])
        task: dict[str, Any] = content.get("task", content) if tool == "complete_task" else content
        return task

    async def _lookup(self, key: str, deadline: float) -> dict[str, Any] | None:
        """The task created with ``key``, once the api answers again (None: not there)."""
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                reply = await self.http.get(
                    "/api/tasks", params={"status": "all", "search": key, "limit": 10}
                )
                if reply.status_code == 200:
                    found = [t for t in reply.json()["items"] if t["title"].startswith(f"{key} ")]
                    return found[0] if found else None
            await asyncio.sleep(0.2)
        return None


@dataclass
class Plan:
    """What the writers were acknowledged for, by key (checked against the database)."""

    writes: int
    hold_at: float = float("inf")  # writers wait here while a kill is under way
    released: asyncio.Event = field(default_factory=asyncio.Event)
    reserved: int = 0
    done: int = 0
    units: int = 0
    keys: list[str] = field(default_factory=list)  # every key a writer used, acknowledged or not
    creates: dict[str, int] = field(default_factory=dict)  # key -> task id
    renamed: dict[int, str] = field(default_factory=dict)  # task id -> title
    completed: list[int] = field(default_factory=list)
    reminders: dict[int, datetime] = field(default_factory=dict)  # task id -> remind at


async def writer(client: Client, plan: Plan, remind_in: float) -> None:
    """Units of create + rename + complete of a weekly task; every fourth a plain create, every
    tenth of those with a reminder ``remind_in`` seconds ahead. A unit with a write given up
    or refused (counted in ``ClientStats``) stops there; the writer goes on with the next."""
    while plan.reserved < plan.writes:
        while plan.reserved >= plan.hold_at:
            await plan.released.wait()
        if plan.reserved >= plan.writes:
            break
        unit, start = plan.units, plan.reserved
        plan.units += 1
        recurring = unit % 4 != 3 and start + 3 <= plan.writes
        reminded = not recurring and unit % 40 == 3 and start + 2 <= plan.writes
        plan.reserved += 3 if recurring else (2 if reminded else 1)
        plan.keys.append(key := f"[k{start}]")
        with contextlib.suppress(AssertionError, TimeoutError):
            await _unit(client, plan, key, recurring=recurring, reminded=reminded, remind_in=remind_in)


async def _unit(
    client: Client, plan: Plan, key: str, *, recurring: bool, reminded: bool, remind_in: float
) -> None:
    task = await client.create(key, "repeat" if recurring else "plain", "weekly" if recurring else None)
    plan.creates[key] = task_id = int(task["id"])
    plan.done += 1
    if recurring:
        plan.renamed[task_id] = title = f"{key} repeat (renamed)"
        await client.rename(task_id, title)
        plan.done += 1
        await client.complete(task_id)
        plan.completed.append(task_id)
        plan.done += 1
    elif reminded:
        plan.reminders[task_id] = at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=remind_in)
        await client.remind(task_id, at)
        plan.done += 1


class Socket:
    """One WebSocket of a user, as the module docstring's client: every id it got (with
    repeats), reconnecting with ``?last_event_id=`` (the highest id seen)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.received: list[int] = []
        self.seen: set[int] = set()
        self.connections = self.resets = self.repeats = 0
        self.connected = asyncio.Event()

    async def run(self) -> None:
        while True:
            url = f"{self.url}&last_event_id={max(self.seen, default=0)}"
            with contextlib.suppress(websockets.ConnectionClosed, websockets.InvalidHandshake, OSError):
                async with websockets.connect(url, max_queue=None, open_timeout=10) as ws:
                    self.connections += 1
                    self.connected.set()
                    async for raw in ws:
                        self._take(json.loads(raw))
            await asyncio.sleep(0.2)

    def _take(self, message: dict[str, Any]) -> None:
        if message.get("type") == "reset":
            self.resets += 1
        if message.get("type") not in ("task", "notification"):
            return
        event_id = int(message["id"])
        self.received.append(event_id)
        if event_id in self.seen:
            self.repeats += 1
        self.seen.add(event_id)


# -- the kills -----------------------------------------------------------------------------------
@dataclass
class Kill:
    kind: str
    at_write: int
    down_s: float
    back_s: float = 0.0  # from the kill until the component runs again
    recovered_s: float | None = None  # from the kill until a probe went through end to end
    orphan_relay_exit_s: float | None = None  # a killed app's relay child: until it exited


class Killer:
    def __init__(self, system: System, probe: Client, probe_socket: Socket, down: float) -> None:
        self.system, self.probe, self.probe_socket, self.down = system, probe, probe_socket, down
        self.kills: list[Kill] = []
        self._probes = 0

    async def kill(self, kind: str, at_write: int) -> Kill:
        record = Kill(kind=kind, at_write=at_write, down_s=self.down)
        began = time.monotonic()
        role_name, _, part = kind.partition("-")
        if kind == "kafka":
            await asyncio.to_thread(self._kill_kafka)
        else:
            role = self.system.roles[role_name]
            if part == "daprd":
                await asyncio.to_thread(role.kill_sidecar)
                await asyncio.sleep(self.down)
                await asyncio.to_thread(role.start_sidecar_again)
            else:
                relay = role.relay_pid()
                await asyncio.to_thread(role.kill_app)
                orphan = asyncio.create_task(self._until_gone(relay, began))
                await asyncio.sleep(self.down)
                await asyncio.to_thread(role.start_app)
        record.back_s = round(time.monotonic() - began, 2)
        await self._probe()
        record.recovered_s = round(time.monotonic() - began, 2)
        if kind != "kafka" and part != "daprd":
            record.orphan_relay_exit_s = await orphan
        self.kills.append(record)
        return record

    def _kill_kafka(self) -> None:
        kafka = self.system.stack.kafka
        pid = kafka.pidfile.read()
        assert pid is not None, "the private Kafka is not running"
        os.kill(pid, signal.SIGKILL)
        while pid_alive(pid):
            time.sleep(0.05)
        time.sleep(self.down)
        kafka.up()

    @staticmethod
    async def _until_gone(pid: int | None, since: float) -> float | None:
        if pid is None:
            return None
        deadline = time.monotonic() + 60
        while pid_alive(pid) and time.monotonic() < deadline:  # noqa: ASYNC110 - another process
            await asyncio.sleep(0.05)
        if pid_alive(pid):  # it outlived its app by a minute: counted, and not left behind
            os.kill(pid, signal.SIGKILL)
            return -1.0
        return round(time.monotonic() - since, 2)

    async def _probe(self, limit: float = 300) -> None:
        """Through every role: a weekly task created and completed (on the probe socket, audited,
        its next occurrence made) and a reminder two seconds ahead (the in-app notification
        on the probe socket)."""
        self._probes += 1
        key = f"[probe{self._probes}]"
        task = int((await self.probe.create(key, "probe", "weekly"))["id"])
        await self.probe.complete(task)
        reminded = int((await self.probe.create(f"{key}r", "probe reminder"))["id"])
        await self.probe.remind(reminded, datetime.now(UTC) + timedelta(seconds=2))
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            audited, nexts, notified, ids = await asyncio.to_thread(self._probe_effects, task, reminded)
            if audited >= 2 and nexts == 1 and notified and ids <= self.probe_socket.seen:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"probe {key} did not come through in {limit}s")

    def _probe_effects(self, task: int, reminded: int) -> tuple[int, int, bool, set[int]]:
        [(audited, nexts)] = self.system.query(
            "select (select count(*) from audit_log where task_id = :t),"
            " (select count(*) from tasks where previous_occurrence_id = :t)", t=task)  # fmt: skip
        rows = self.system.query(f"{_CLIENT_ROWS} and task_id in (:t, :r)", t=task, r=reminded)
        notified = any(row.event_type.startswith("todo.notification.") for row in rows)
        return int(audited), int(nexts), notified, {row.id for row in rows}


# -- one run ---------------------------------------------------------------------------------------
@dataclass
class Settings:
    writes: int = 10_000
    kinds: tuple[str, ...] = KINDS
    rounds: int = 2
    users: int = 4
    writers: int = 8  # half over REST, half over MCP
    down: float = 1.0  # seconds a killed component stays down
    remind_in: float = 20.0
    settle: float = 300.0  # seconds to wait at the end for everything to come through


@dataclass
class Run:
    system: System
    settings: Settings
    plan: Plan
    stats: ClientStats
    sockets: dict[str, list[Socket]]
    killer: Killer
    write_seconds: float = 0.0
    killing_seconds: float = 0.0  # from each kill until its probe came through
    writes_while_killing: int = 0
    settle_seconds: float = 0.0
    machine_cpu_s: float = 0.0
    load: tuple[float, float] = (0.0, 0.0)


async def run(system: System, settings: Settings) -> Run:
    """Write, kill on schedule, wait for everything to settle; the checks are in ``figures``."""
    users = [f"chaos-{n}" for n in range(settings.users)]
    stats, plan = ClientStats(), Plan(writes=settings.writes)
    sockets = {user: [Socket(_ws_url(system, user)) for _ in range(2)] for user in [*users, PROBE_USER]}
    watching = [asyncio.create_task(s.run()) for group in sockets.values() for s in group]
    await asyncio.wait_for(asyncio.gather(*(s.connected.wait() for g in sockets.values() for s in g)), 60)
    probe = Client(system, PROBE_USER, "rest", ClientStats())
    killer = Killer(system, probe, sockets[PROBE_USER][0], settings.down)
    await killer._probe()  # every subscription is live before the first write
    clients = [Client(system, users[n % len(users)], "rest" if n % 2 == 0 else "mcp", stats)
               for n in range(settings.writers)]  # fmt: skip
    result = Run(system=system, settings=settings, plan=plan, stats=stats, sockets=sockets, killer=killer)
    busy, load_before = _machine_busy(), os.getloadavg()[0]
    began = time.monotonic()
    writing = asyncio.gather(*(writer(c, plan, settings.remind_in) for c in clients))
    schedule = [kind for _ in range(settings.rounds) for kind in settings.kinds]
    spacing = settings.writes // (len(schedule) + 1)
    for n, kind in enumerate(schedule):
        mark = (n + 1) * spacing
        plan.hold_at = mark + spacing // 2  # writes before, during and after each kill
        while plan.done < mark and not writing.done():  # noqa: ASYNC110 - a counter, polled
            await asyncio.sleep(0.05)
        if writing.done():
            break
        before, began_kill = plan.done, time.monotonic()
        record = await killer.kill(kind, plan.done)
        result.killing_seconds += time.monotonic() - began_kill
        result.writes_while_killing += plan.done - before
        plan.hold_at, released, plan.released = float("inf"), plan.released, asyncio.Event()
        released.set()
        print(f"kill {n + 1}/{len(schedule)}: {record}", file=sys.stderr)
    await writing
    result.write_seconds = time.monotonic() - began
    result.machine_cpu_s, result.load = _machine_busy() - busy, (load_before, os.getloadavg()[0])
    settled = time.monotonic()
    await _settle(result)
    result.settle_seconds = time.monotonic() - settled
    await asyncio.sleep(1.0)  # a repeat would come now
    for task in watching:
        task.cancel()
    for client in [*clients, probe]:
        await client.aclose()
    return result


def _ws_url(system: System, user: str) -> str:
    return f"ws://127.0.0.1:{system.api.port}/ws?token={system.token(user)}"


async def _settle(run: Run) -> None:
    """Until every row is published and audited, reminders are done and sockets caught up."""
    deadline = time.monotonic() + run.settings.settle
    while time.monotonic() < deadline:
        state = await asyncio.to_thread(_progress, run)
        if not any(state.values()):
            return
        await asyncio.sleep(0.5)
    print(
        f"not settled after {run.settings.settle}s: {await asyncio.to_thread(_progress, run)}",
        file=sys.stderr,
    )


def _progress(run: Run) -> dict[str, int]:
    q = run.system.query
    [(pending, unaudited, reminding, unrepeated)] = q(
        "select (select count(*) from outbox where published_at is null and failed_at is null),"
        " (select count(*) from outbox o where topic = 'task-events'"
        "   and not exists (select 1 from audit_log a where a.event_id = o.id::text)),"
        " (select count(*) from tasks where reminder_state = 'pending'),"
        " (select count(*) from tasks t where completed and recurrence is not null"
        "   and not exists (select 1 from tasks n where n.previous_occurrence_id = t.id))")  # fmt: skip
    behind = sum(len(_expected(run, user) - s.seen) for user, group in run.sockets.items() for s in group)
    return {"pending": pending, "unaudited": unaudited, "reminding": reminding,
            "no_next_occurrence": unrepeated, "socket_behind": behind}  # fmt: skip


_CLIENT_ROWS = "select id, event_type from outbox where topic in ('task-events', 'task-updates')"


def _expected(run: Run, user: str) -> set[int]:
    return {r[0] for r in run.system.query(f"{_CLIENT_ROWS} and user_id = :u", u=user)}


# -- the checks ------------------------------------------------------------------------------------
def figures(run: Run) -> dict[str, Any]:
    q, plan, stats = run.system.query, run.plan, run.stats
    tasks = q("select id, title, completed, previous_occurrence_id, reminder_state from tasks"
              " where owner_id like 'chaos-%' and owner_id <> :p", p=PROBE_USER)  # fmt: skip
    originals: dict[str, list[Any]] = {}
    for row in tasks:
        if row.previous_occurrence_id is None:
            originals.setdefault(row.title.split(" ", 1)[0], []).append(row)
    by_id = {row.id: row for row in tasks}
    keys = plan.keys
    nexts = Counter(row.previous_occurrence_id for row in tasks if row.previous_occurrence_id is not None)
    events = Counter(
        r[0] for r in q("select task_id from outbox where topic = 'task-events' and user_id like 'chaos-%'")
    )
    [(audit_rows, audit_distinct, unaudited, extra_audit)] = q(
        "select count(*), count(distinct event_id),"
        " (select count(*) from outbox o where topic = 'task-events'"
        "   and not exists (select 1 from audit_log a where a.event_id = o.id::text)),"
        " (select count(*) from audit_log a where not exists"
        "   (select 1 from outbox o where o.topic = 'task-events' and o.id::text = a.event_id))"
        " from audit_log")  # fmt: skip
    [(unpublished, failed)] = q("select count(*) filter (where published_at is null and failed_at is null),"
                                " count(*) filter (where failed_at is not null) from outbox")  # fmt: skip
    in_app = Counter(r[0] for r in q("select task_id from notifications where channel = 'in_app'"))
    sockets = [(user, s) for user, group in run.sockets.items() for s in group]
    missing = sum(len(_expected(run, user) - s.seen) for user, s in sockets)
    expected_events = {task_id: (3 if task_id in plan.completed else 2 if task_id in plan.reminders else 1)
                       for task_id in plan.creates.values()}  # fmt: skip
    kills = run.killer.kills
    recovered = [k.recovered_s for k in kills if k.recovered_s is not None]
    acked = stats.acked
    return {
        "writes": plan.writes,
        "acked": acked,
        "users": run.settings.users,
        "writers": run.settings.writers,
        "write_seconds": round(run.write_seconds, 1),
        "writes_per_s": round(acked / run.write_seconds, 1) if run.write_seconds else None,
        "killing_seconds": round(run.killing_seconds, 1),  # from each kill until its probe came through
        "writes_per_s_between_kills": round(
            (acked - run.writes_while_killing) / max(0.1, run.write_seconds - run.killing_seconds), 1
        ),  # fmt: skip
        "settle_seconds": round(run.settle_seconds, 1),
        "kills": len(kills),
        "kills_by_kind": dict(Counter(k.kind for k in kills)),
        "max_recovery_s": max(recovered, default=None),
        "recovery_s_by_kind": {
            kind: max(k.recovered_s or 0 for k in kills if k.kind == kind)
            for kind in dict.fromkeys(k.kind for k in kills)
        },  # fmt: skip
        "orphan_relay_exit_s_max": max(
            (k.orphan_relay_exit_s for k in kills if k.orphan_relay_exit_s), default=None
        ),
        "orphan_relays_left": sum(1 for k in kills if k.orphan_relay_exit_s == -1.0),
        # the client side
        "refused_attempts": stats.refused,
        "unknown_outcomes": stats.unknown,
        "creates_found_after_unknown": stats.found_after_unknown,
        "server_errors": stats.server_errors,
        "given_up": len(stats.given_up),
        "rejected": stats.rejected[:5],
        # lost / applied twice
        "lost_writes": sum(1 for k in keys if not originals.get(k)),
        "creates_applied_twice": sum(1 for k in keys if len(originals.get(k, [])) > 1),
        "acked_not_in_db": sum(1 for t in plan.creates.values() if t not in by_id)
        + sum(1 for t, title in plan.renamed.items() if t in by_id and by_id[t].title != title)
        + sum(1 for t in plan.completed if t in by_id and not by_id[t].completed),
        "events_missing": sum(1 for t, n in expected_events.items() if events[t] < n),
        "events_twice": sum(1 for t, n in expected_events.items() if events[t] > n),
        "next_occurrence_missing": sum(1 for t in plan.completed if nexts[t] == 0),
        "next_occurrence_twice": sum(1 for t in plan.completed if nexts[t] > 1),
        "outbox_unpublished": unpublished,
        "outbox_failed": failed,
        "audit_missing": unaudited,
        "audit_twice": audit_rows - audit_distinct,
        "audit_unknown": extra_audit,
        "reminders": len(plan.reminders),
        "reminders_not_sent": sum(1 for t in plan.reminders if by_id[t].reminder_state != "sent"),
        "reminder_notifications_twice": sum(1 for t in plan.reminders if in_app[t] > 1),
        "reminder_notifications_missing": sum(1 for t in plan.reminders if in_app[t] == 0),
        # the sockets
        "sockets": len(sockets),
        "socket_updates_expected": sum(len(_expected(run, u)) for u, _ in sockets),
        "socket_missing": missing,
        "socket_resets": sum(s.resets for _, s in sockets),
        "socket_wire_repeats": sum(s.repeats for _, s in sockets),
        "socket_connections": sum(s.connections for _, s in sockets),
        # the machine
        "machine_cpu_ms_per_write": round(run.machine_cpu_s * 1000 / max(1, acked), 2),
        "load_average_1m": [round(x, 2) for x in run.load],
        "kill_log": [vars(k) for k in kills],
    }


def _machine_busy() -> float:
    from benchmarks.events_e2e import machine_busy_seconds

    return machine_busy_seconds()


def faults(result: dict[str, Any]) -> dict[str, Any]:
    """The figures that must be 0 (or empty) for a run without loss or repeated effect."""
    names = ("given_up", "lost_writes", "creates_applied_twice", "acked_not_in_db", "events_missing",
             "events_twice", "next_occurrence_missing", "next_occurrence_twice", "outbox_unpublished",
             "outbox_failed", "audit_missing", "audit_twice", "audit_unknown", "reminders_not_sent",
             "reminder_notifications_twice", "reminder_notifications_missing", "socket_missing",
             "socket_resets", "orphan_relays_left", "server_errors")  # fmt: skip
    found = {name: result[name] for name in names if result[name]}
    if result["rejected"]:
        found["rejected"] = result["rejected"]
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2, help="times each kind of kill happens")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, of {', '.join(KINDS)}")
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--writers", type=int, default=8, help="concurrent clients, half REST, half MCP")
    parser.add_argument("--down", type=float, default=1.0, help="seconds a killed component stays down")
    args = parser.parse_args()
    kinds = tuple(k for k in args.kinds.split(",") if k)
    unknown = set(kinds) - set(KINDS)
    if unknown:
        parser.error(f"unknown kinds {sorted(unknown)}; choose from {', '.join(KINDS)}")
    settings = Settings(writes=args.writes, kinds=kinds, rounds=args.rounds, users=args.users,
                        writers=args.writers, down=args.down)  # fmt: skip
    folder = Path(tempfile.mkdtemp(prefix="chaos-"))
    print(f"logs in {folder / 'logs'}", file=sys.stderr)
    with private_stack(folder / "stack") as stack, running_system(stack, folder / "logs") as system:
        outcome = asyncio.run(run(system, settings))
        result = figures(outcome)
    result["cpu_s_of_the_system_under_test"] = round(sum(resource.getrusage(resource.RUSAGE_CHILDREN)[:2]), 1)
    result["faults"] = faults(result)
    print(json.dumps(result))
    return 1 if result["faults"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
