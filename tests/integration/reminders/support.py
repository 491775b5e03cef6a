"""Helpers for the reminder tests on the real stack: roles beside their daprd, Kafka reads."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import pytest
from aiosmtpd.smtp import Envelope
from kafka import KafkaConsumer, TopicPartition
from pydantic import SecretStr
from sqlmodel import Session, col, select

from devstack.appserver import AppServer
from devstack.components import RenderedResources
from devstack.procs import free_port
from devstack.sidecar import Sidecar
from mcp_server.auth import JwtVerifier
from tasks.models import Notification, OutboxEvent
from tests.conftest import JWT_SECRET
from todo_agent.api import app_for
from todo_agent.bootstrap import Container, bootstrap
from todo_agent.settings import Settings

APP_TOKEN = "app-token-for-the-reminder-tests"

SUBSCRIPTIONS = """\
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: reminders-notifications
spec:
  pubsubname: kafka-pubsub
  topic: reminders
  routes:
    default: /events/reminders
  deadLetterTopic: reminders-dlq
scopes:
  - {notifications}
---
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: task-updates-api
spec:
  pubsubname: kafka-pubsub
  topic: task-updates
  routes:
    default: /events/task-updates
  deadLetterTopic: task-updates-dlq
scopes:
  - {api}
"""


class Inbox:
    """The SMTP server's mailbox."""

    def __init__(self) -> None:
        self.messages: list[Envelope] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        self.messages.append(envelope)
        return "250 OK"


@dataclass
class Role:
    container: Container
    sidecar: Sidecar
    server: AppServer


@dataclass
class ReminderSystem:
    api: Role
    notifications: Role | None
    kafka_brokers: str
    inbox: Inbox = field(default_factory=Inbox)
    verifier: JwtVerifier = field(
        default_factory=lambda: JwtVerifier(secret=JWT_SECRET, audience="todo-agent")
    )

    @property
    def url(self) -> str:
        return self.api.server.url

    def client(self, user: str) -> httpx.AsyncClient:
        token = self.verifier.issue(user, ttl=3600, zoneinfo="Europe/Berlin")
        return httpx.AsyncClient(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=20)

    def ws_url(self, user: str) -> str:
        token = self.verifier.issue(user, ttl=3600)
        return f"ws://127.0.0.1:{self.api.server.port}/ws?token={token}"

    def reminder_rows(self, task_id: int) -> list[OutboxEvent]:
        with Session(self.api.container.engine) as session:
            query = select(OutboxEvent).where(
                OutboxEvent.topic == "reminders", OutboxEvent.task_id == task_id
            )
            return list(session.exec(query))

    def notification_rows(self, task_id: int) -> list[Notification]:
        with Session(self.api.container.engine) as session:
            return list(session.exec(select(Notification).where(col(Notification.task_id) == task_id)))

    async def job_exists(self, task_id: int) -> bool:
        async with httpx.AsyncClient(base_url=self.api.sidecar.http_url, timeout=10) as client:
            response = await client.get(f"/v1.0/jobs/reminder-task-{task_id}")
        return response.status_code == 200


def settings_for(pg_url: str, sidecar: Sidecar, **extra: Any) -> Settings:
    return Settings(
        database_url=pg_url,
        jwt_secret=SecretStr(JWT_SECRET),
        timezone="Europe/Berlin",
        app_api_token=SecretStr(APP_TOKEN),
        dapr_http_port=sidecar.http_port,
        dapr_grpc_port=sidecar.grpc_port,
        webhook_allowed_networks=["127.0.0.1/32"],  # the tests' webhook receivers are on loopback
        **extra,
    )


def start_role(
    role: str, app_id: str, *, pg_url: str, resources: RenderedResources, sidecar_factory: Any,
    app_server_factory: Any, scheduler: str | None = None,
    monkeypatch: pytest.MonkeyPatch | None = None, **settings: Any,
) -> Role:  # fmt: skip
    port = free_port()
    kwargs: dict[str, Any] = {"scheduler": scheduler} if scheduler else {}
    sidecar = sidecar_factory(app_id, port, resources=resources, app_api_token=APP_TOKEN, **kwargs)
    if monkeypatch is not None:
        # The Dapr SDK's DaprClient (agent memory) waits for the sidecar named by DAPR_HTTP_PORT.
        monkeypatch.setenv("DAPR_HTTP_PORT", str(sidecar.http_port))
    container = bootstrap(role, settings_for(pg_url, sidecar, **settings))  # type: ignore[arg-type]
    server = app_server_factory(app_for(container), port=port)
    sidecar.wait_ready("app")
    return Role(container, sidecar, server)


def kafka_events_since(
    brokers: str,
    offsets: dict[TopicPartition, int],
    match: Callable[[dict[str, Any]], bool],
    wait: float = 5,
    *,
    until: int | None = None,
) -> list[dict[str, Any]]:
    """CloudEvents written after ``offsets`` that ``match``, read for ``wait`` seconds (or until
    ``until`` of them are found)."""
    consumer = KafkaConsumer(bootstrap_servers=brokers, enable_auto_commit=False)
    try:
        consumer.assign(list(offsets))
        for part, offset in offsets.items():
            consumer.seek(part, offset)
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and (until is None or len(found) < until):
            for batch in consumer.poll(timeout_ms=300).values():
                for record in batch:
                    event = json.loads(record.value)
                    if match(event):
                        found.append(event)
        return found
    finally:
        consumer.close()


async def eventually(check: Callable[[], Any], *, seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        await asyncio.sleep(0.1)


def iso(when: datetime) -> str:
    return when.isoformat()
