"""One request, one trace, across every process; and the outbox backlog in ``/metrics``.

The roles run as ``todo-agent serve ROLE`` beside their own daprd (as in the other event tests)
with tracing on, sending their spans to the stack's Jaeger (``python -m devstack up`` starts it);
each daprd sends its own there too (``dapr-components/config.yaml``). One chat turn (the offline
model) adds a task; Jaeger's query API must then hold, under that turn's trace id, the api's
HTTP, chat, MCP tool and use-case spans, the relay's publish span, daprd's spans, and the audit
and recurrence consumers' spans: the trace crossed the outbox, daprd and Kafka.

The metrics test stops Kafka, which must never happen to the shared stack: it runs on a private
one (``isolated_stack``).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from devstack.components import render
from devstack.postgres import sqlalchemy_url
from devstack.stack import Stack
from tasks.db import make_engine, migrate
from tests.integration.events.support import (
    BROADCAST_COMPONENT,
    AppIds,
    EventSystem,
    RoleLauncher,
    launching,
    subscriptions,
)
from tests.integration.kafka_support import wait_for_consumer_group

pytestmark = pytest.mark.integration


def tracing_env(stack: Stack, service: str) -> dict[str, str]:
    """An app's environment for sending its spans (as ``service``) to the stack's Jaeger soon."""
    return {**stack.jaeger.app_env(), "OTEL_SERVICE_NAME": service, "OTEL_BSP_SCHEDULE_DELAY": "200"}


def app_service(app_id: str) -> str:
    """The service name of an app's own spans (its daprd's spans carry the bare app id)."""
    return f"{app_id}-app"


@pytest.fixture
def traced_system(
    role_launcher: RoleLauncher, event_app_ids: AppIds, kafka_brokers: str, stack: Stack
) -> EventSystem:
    ids = event_app_ids
    roles = {
        role: role_launcher.start(role, app_id, extra_env=tracing_env(stack, app_service(app_id)))
        for role, app_id in (("api", ids.api), ("recurrence", ids.recurrence), ("audit", ids.audit))
    }
    for group in (ids.recurrence, ids.audit):
        wait_for_consumer_group(kafka_brokers, group)
    system = EventSystem(api=roles["api"], recurrence=roles["recurrence"], audit=roles["audit"],
                         kafka_brokers=kafka_brokers, pg_url=role_launcher.pg_url)  # fmt: skip
    system.wait_for_live_updates()
    return system


def jaeger_traces(stack: Stack, service: str, operation: str) -> list[dict[str, Any]]:
    reply = httpx.get(
        f"{stack.jaeger.ui_url}/api/traces",
        params={"service": service, "operation": operation, "limit": 20, "lookback": "1h"},
        timeout=10,
    )
    reply.raise_for_status()
    data: list[dict[str, Any]] = reply.json().get("data") or []
    return data


def jaeger_trace(stack: Stack, trace_id: str) -> dict[str, Any]:
    reply = httpx.get(f"{stack.jaeger.ui_url}/api/traces/{trace_id}", timeout=10)
    if reply.status_code == 404:
        return {"spans": [], "processes": {}}
    reply.raise_for_status()
    trace: dict[str, Any] = reply.json()["data"][0]
    return trace


def spans_by_service(trace: dict[str, Any]) -> dict[str, set[str]]:
    """``{service name: {operation names}}`` of one Jaeger trace."""
    services = {pid: p["serviceName"] for pid, p in trace["processes"].items()}
    found: dict[str, set[str]] = {}
    for span in trace["spans"]:
        found.setdefault(services[span["processID"]], set()).add(span["operationName"])
    return found


@pytest.mark.timeout(300)
async def test_a_chat_turn_that_adds_a_task_is_one_trace_through_relay_daprd_kafka_and_both_consumers(
    traced_system: EventSystem, event_app_ids: AppIds, stack: Stack
) -> None:
    ids, api = event_app_ids, app_service(event_app_ids.api)
    user = f"tracer-{uuid.uuid4().hex[:8]}"
    async with traced_system.http(user) as http:
        reply = await http.post("/api/chat", json={"message": "add buy milk tomorrow 5pm"})
    assert reply.status_code == 200, reply.text
    assert [c["name"] for c in reply.json()["tool_calls"]] == ["add_task"], reply.text

    wanted = {
        api: {"POST /api/chat", "chat.turn", "mcp.tool add_task", "use_case tasks.add"},
        f"{api}-relay": {"task-events publish"},
        app_service(ids.audit): {"audit apply"},
        app_service(ids.recurrence): {"recurrence apply"},
    }
    sidecars = {ids.api, ids.audit, ids.recurrence}  # daprd names its spans' service by app id
    deadline = time.monotonic() + 90
    seen: dict[str, set[str]] = {}
    trace_id = None
    while time.monotonic() < deadline:
        if trace_id is None:
            found = jaeger_traces(stack, api, "mcp.tool add_task")
            trace_id = found[0]["traceID"] if found else None
        if trace_id is not None:
            seen = spans_by_service(jaeger_trace(stack, trace_id))
            if all(ops <= seen.get(service, set()) for service, ops in wanted.items()) and sidecars <= set(
                seen
            ):
                break
        await asyncio.sleep(1)
    assert trace_id is not None, f"Jaeger has no trace of {api} with an add_task tool span"
    missing = {
        s: sorted(ops - seen.get(s, set())) for s, ops in wanted.items() if not ops <= seen.get(s, set())
    }
    assert missing == {}, f"trace {trace_id} lacks these spans: {missing}; it has {seen}"
    assert sidecars <= set(seen), (
        f"no daprd spans of {sorted(sidecars - set(seen))} in trace {trace_id}: {seen}"
    )


# -- metrics ------------------------------------------------------------------------------------
def metrics_text(url: str) -> str:
    reply = httpx.get(f"{url}/metrics", timeout=10)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain"), reply.headers
    return reply.text


def outbox_backlog(url: str) -> float:
    text = metrics_text(url)
    match = re.search(r"^todo_outbox_backlog (\S+)$", text, re.M)
    assert match, f"no todo_outbox_backlog in /metrics:\n{text[:2000]}"
    return float(match.group(1))


def wait_for_backlog(url: str, check: Any, what: str, limit: float) -> float:
    deadline = time.monotonic() + limit
    while True:
        value = outbox_backlog(url)
        if check(value) or time.monotonic() > deadline:
            assert check(value), f"{what}: the backlog is {value} after {limit:.0f}s"
            return value
        time.sleep(0.5)


@pytest.fixture
def api_on_private_stack(
    isolated_stack: Stack, session_id: str, tmp_path: Path, sidecar_factory: Any, stack_log_dir: Path
) -> Iterator[tuple[Stack, EventSystem]]:
    admin = isolated_stack.postgres.admin_url()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier("todo_metrics")))
    pg_url = sqlalchemy_url(f"{admin.rsplit('/', 1)[0]}/todo_metrics")
    brokers = isolated_stack.cfg.kafka_brokers
    ids = AppIds(api=f"todo-api-m{session_id}", recurrence=f"todo-recurrence-m{session_id}",
                 audit=f"todo-audit-m{session_id}")  # fmt: skip
    resources = render(tmp_path / "dapr", kafka_brokers=brokers, pg_url=pg_url, subscriptions=False,
        extra={
            "subscriptions.yaml": subscriptions(**vars(ids)),
            "kafka-pubsub-broadcast.yaml": BROADCAST_COMPONENT.format(brokers=brokers, api=ids.api),
        },
    )  # fmt: skip
    engine = make_engine(pg_url)
    migrate(engine)
    engine.dispose()
    scheduler = isolated_stack.cfg.scheduler_address
    with launching(resources, pg_url, sidecar_factory, stack_log_dir, scheduler) as launcher:
        api = launcher.start("api", ids.api)
        system = EventSystem(api=api, recurrence=api, audit=api, kafka_brokers=brokers, pg_url=pg_url)
        yield isolated_stack, system
        system.engine.dispose()


@pytest.mark.timeout(300)
async def test_metrics_show_the_outbox_backlog_rise_while_kafka_is_down_and_drain_to_zero_after(
    api_on_private_stack: tuple[Stack, EventSystem],
) -> None:
    stack, system = api_on_private_stack
    url = system.api.url
    async with system.http("metrics-user") as http:
        assert (await http.post("/api/tasks", json={"title": "before the outage"})).status_code == 201
        wait_for_backlog(url, lambda v: v == 0, "the first write published", 60)
        stack.kafka.down()
        try:
            for n in range(5):
                reply = await http.post("/api/tasks", json={"title": f"written while Kafka is down {n}"})
                assert reply.status_code == 201, reply.text
            risen = wait_for_backlog(url, lambda v: v >= 5, "the writes made during the outage", 30)
            await asyncio.sleep(3)  # the relay keeps trying meanwhile; nothing may leave the outbox
            assert outbox_backlog(url) >= 5
        finally:
            stack.kafka.up()
    wait_for_backlog(url, lambda v: v == 0, "the backlog drained after Kafka came back", 120)
    assert risen >= 5
    text = metrics_text(url)
    assert "todo_relay_process_up 1.0" in text  # the relay's child, through the same scrape
    published = re.search(r"^todo_relay_published_total (\S+)$", text, re.M)
    assert published and float(published.group(1)) >= 6, text[:3000]
    assert re.search(r'^todo_relay_publish_duration_seconds_count\{topic="task-events"\} [1-9]', text, re.M)
