"""Helpers for the event tests on the real stack: role processes beside daprd, Kafka reads."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websockets
from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import Engine
from sqlmodel import Session, col, func, select

from auth.tokens import JwtVerifier
from devstack.components import RenderedResources, subscriptions_for
from devstack.procs import free_port, http_status, spawn, stop_pid, wait_until
from devstack.sidecar import Sidecar, pod_name
from devstack.stack import Stack
from observability.scrape import Scrape
from tasks.db import make_engine
from tasks.models import AuditEntry, OutboxEvent
from tests.conftest import JWT_SECRET
from tests.integration.kafka_support import wait_for_consumer_group

APP_TOKEN = "app-token-for-the-event-tests"
TODO_AGENT = str(Path(sys.executable).with_name("todo-agent"))


def subscriptions(*, api: str, recurrence: str, audit: str) -> str:
    """The committed subscriptions, scoped to this run's app ids."""
    return subscriptions_for({"todo-api": api, "todo-recurrence": recurrence, "todo-audit": audit})


_COMMITTED_BROADCAST = Path(__file__).parents[3] / "dapr-components" / "kafka-pubsub-broadcast.yaml"
BROADCAST_COMPONENT = (
    _COMMITTED_BROADCAST.read_text()
    .replace("{", "{{")
    .replace("}", "}}")
    .replace('"127.0.0.1:59092"', '"{brokers}"')
    .replace("  - todo-api", "  - {api}")
)


@dataclass(frozen=True)
class AppIds:
    api: str
    recurrence: str
    audit: str


@dataclass
class RoleProcess:
    """``todo-agent serve ROLE`` beside its own daprd; both stopped and restarted by pid."""

    role: str
    app_id: str
    port: int
    sidecar: Sidecar
    env: dict[str, str]
    sidecar_env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    host: str | None = None  # --host (default: loopback)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_app(self) -> None:
        args = [TODO_AGENT, "serve", self.role, "--port", str(self.port)]
        args += ["--host", self.host] if self.host else []
        inherited = {k: v for k, v in os.environ.items() if k != "APP_API_TOKEN"}
        self.proc = spawn(
            args, log_path=self.log_path, env={**inherited, **self.env, **self.sidecar.app_env()}
        )
        wait_until(lambda: http_status(f"{self.url}/healthz") == 200, what=f"{self.role} app",
                   timeout=60, log_path=self.log_path, proc=self.proc)  # fmt: skip

    def stop_app(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_pid(self.proc.pid, timeout=10)
            self.proc.wait(5)

    def restart_sidecar(self, *, down_for: float = 0.0) -> None:
        """Stop daprd and start it again with the same ports (the app keeps its address)."""
        old = self.sidecar
        old.stop()
        time.sleep(down_for)
        env = {k: v for k, v in os.environ.items() if k not in ("APP_API_TOKEN", "DAPR_API_TOKEN")}
        env.update({**self.sidecar_env, "DAPR_HOST_IP": "127.0.0.1", "APP_API_TOKEN": APP_TOKEN,
                    "POD_NAME": pod_name(old.app_id, old.app_port, old.http_port)})  # fmt: skip
        proc = spawn([str(a) for a in old.proc.args], log_path=old.log_path, env=env)  # type: ignore[union-attr]
        self.sidecar = Sidecar(
            app_id=old.app_id, app_port=old.app_port, http_port=old.http_port, grpc_port=old.grpc_port,
            internal_grpc_port=old.internal_grpc_port, log_path=old.log_path, proc=proc,
        )  # fmt: skip
        self.sidecar.wait_ready("app", timeout=60)

    def stop(self) -> None:
        self.stop_app()
        self.sidecar.stop()


@dataclass
class RoleLauncher:
    resources: RenderedResources
    pg_url: str
    sidecar_factory: Any
    log_dir: Path
    scheduler: str | None = None  # another stack's scheduler (default: the shared stack's)
    started: list[RoleProcess] = field(default_factory=list)

    def start(
        self,
        role: str,
        app_id: str,
        *,
        app_token: str | None = APP_TOKEN,
        host: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> RoleProcess:
        """``role`` beside its daprd; ``app_token=None`` runs both without ``APP_API_TOKEN``."""
        port = free_port()
        sidecar_env = dict(self.resources.env)
        sidecar = self.sidecar_factory(app_id, port, app_api_token=app_token, wait_for="outbound",
                                       resources=self.resources, scheduler=self.scheduler)  # fmt: skip
        env = {
            "TODO_DATABASE_URL": self.pg_url, "TODO_JWT_SECRET": JWT_SECRET, "TODO_TIMEZONE": "UTC",
            "TODO_LOG_LEVEL": "INFO", **({"APP_API_TOKEN": app_token} if app_token else {}),
            **(extra_env or {}),
        }  # fmt: skip
        process = RoleProcess(
            role=role, app_id=app_id, port=port, sidecar=sidecar, env=env, sidecar_env=sidecar_env,
            log_path=self.log_dir / f"{app_id}-{port}.log", host=host,
        )  # fmt: skip
        self.started.append(process)
        process.start_app()
        sidecar.wait_ready("app", timeout=60)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.started):
            process.stop()

    def start_event_system(self, ids: AppIds, kafka_brokers: str) -> EventSystem:
        """The api, recurrence and audit roles, consumers joined and live updates flowing."""
        api = self.start("api", ids.api)
        recurrence = self.start("recurrence", ids.recurrence)
        audit = self.start("audit", ids.audit)
        for group in (ids.recurrence, ids.audit):
            wait_for_consumer_group(kafka_brokers, group)
        system = EventSystem(api=api, recurrence=recurrence, audit=audit, kafka_brokers=kafka_brokers,
                             pg_url=self.pg_url)  # fmt: skip
        system.wait_for_live_updates()
        return system


@dataclass
class PrivateStack:
    """A stack of this test's own (``isolated_stack``: its Kafka may be stopped) with a fresh
    database and Dapr resources for ``ids``; ``launcher`` starts roles on it."""

    stack: Stack
    ids: AppIds
    launcher: RoleLauncher

    @property
    def brokers(self) -> str:
        return self.stack.cfg.kafka_brokers


@asynccontextmanager
async def kafka_stopped(stack: Stack) -> AsyncIterator[None]:
    """Kafka of a private stack down for the block, started again after it (also on failure).
    Never the shared stack's: other sessions' tests use it."""
    await asyncio.to_thread(stack.kafka.down)
    try:
        yield
    finally:
        await asyncio.to_thread(stack.kafka.up)


def scrape(url: str) -> Scrape:
    """The role's ``GET /metrics``, read back."""
    reply = httpx.get(f"{url}/metrics", timeout=10)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain"), reply.headers
    return Scrape.of(reply.text)


@contextmanager
def launching(resources: RenderedResources, pg_url: str, sidecar_factory: Any, log_dir: Path,
              scheduler: str | None = None) -> Iterator[RoleLauncher]:  # fmt: skip
    """A :class:`RoleLauncher` whose roles (apps and their daprd) are all stopped at the end."""
    launcher = RoleLauncher(resources=resources, pg_url=pg_url, sidecar_factory=sidecar_factory,
                            log_dir=log_dir, scheduler=scheduler)  # fmt: skip
    try:
        yield launcher
    finally:
        launcher.stop_all()


def records_since(
    brokers: str, offsets: dict[TopicPartition, int], match: Callable[[dict[str, Any]], bool],
    *, expected: int, wait: float = 30,
) -> list[tuple[str | None, dict[str, Any]]]:  # fmt: skip
    """``(key, CloudEvent)`` written after ``offsets`` that ``match``; stops at ``expected``."""
    consumer = KafkaConsumer(bootstrap_servers=brokers, enable_auto_commit=False)
    found: list[tuple[str | None, dict[str, Any]]] = []
    try:
        consumer.assign(list(offsets))
        for tp, offset in offsets.items():
            consumer.seek(tp, offset)
        deadline = time.monotonic() + wait
        while len(found) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=300).values():
                for record in batch:
                    try:
                        event = json.loads(record.value)
                    except ValueError:
                        continue
                    if isinstance(event, dict) and match(event):
                        found.append((record.key.decode() if record.key else None, event))
        return found
    finally:
        consumer.close()


@dataclass
class EventSystem:
    api: RoleProcess
    recurrence: RoleProcess
    audit: RoleProcess
    kafka_brokers: str
    pg_url: str
    verifier: JwtVerifier = field(
        default_factory=lambda: JwtVerifier(secret=JWT_SECRET, audience="todo-agent")
    )
    _engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.pg_url)
        return self._engine

    def token(self, user: str) -> str:
        return self.verifier.issue(user, ttl=3600)

    def http(self, user: str) -> httpx.AsyncClient:
        headers = {"authorization": f"Bearer {self.token(user)}"}
        return httpx.AsyncClient(base_url=self.api.url, headers=headers, timeout=30)

    def ws_url(self, user: str) -> str:
        return f"ws://127.0.0.1:{self.api.port}/ws?token={self.token(user)}"

    def audit_event_ids(self, user: str) -> list[str]:
        with Session(self.engine) as session:
            return list(session.exec(select(AuditEntry.event_id).where(AuditEntry.user_id == user)).all())

    def outbox_ids(self, user: str, topic: str = "task-events") -> list[str]:
        with Session(self.engine) as session:
            statement = select(OutboxEvent.id).where(OutboxEvent.user_id == user, OutboxEvent.topic == topic)
            return [str(i) for i in session.exec(statement.order_by(col(OutboxEvent.id))).all()]

    def backlog(self) -> int:
        with Session(self.engine) as session:
            pending = col(OutboxEvent.published_at).is_(None)
            return int(session.exec(select(func.count()).select_from(OutboxEvent).where(pending)).one())

    def wait_for_live_updates(self, timeout: float = 60) -> None:
        """The api's broadcast subscription starts at the newest offset once it has joined:
        write probe tasks until one reaches a WebSocket."""
        asyncio.run(self._probe(timeout))

    async def _probe(self, limit: float) -> None:
        user = "probe"
        deadline = time.monotonic() + limit
        async with websockets.connect(self.ws_url(user)) as ws, self.http(user) as http:
            await ws.recv()  # hello
            while time.monotonic() < deadline:
                await http.post("/api/tasks", json={"title": "probe"})
                try:
                    await asyncio.wait_for(ws.recv(), 3)
                    return
                except TimeoutError:
                    continue
        raise AssertionError(f"no live update reached the api's WebSocket in {limit}s")


async def wait_until_async(predicate: Callable[[], bool], what: str, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if await asyncio.to_thread(predicate):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {limit}s waiting for {what}")
