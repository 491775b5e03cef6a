"""One request, one trace, across every process; and the outbox backlog in ``/metrics``.

The roles run as ``todo-agent serve ROLE`` beside their own daprd (as in the other event tests)
with tracing on, sending their spans to the stack's Jaeger (``python -m devstack up`` starts it);
each daprd sends its own there too (``dapr-components/config.yaml``). One chat turn (the offline
model) adds a task; Jaeger's query API must then hold, under that turn's trace id, the api's
HTTP, chat, MCP tool (the MCP SDK's) and use-case spans, its conversation memory's calls to the
state store through daprd, the relay's publish span, daprd's spans, and the audit
and recurrence consumers' spans: the trace crossed the outbox, daprd and Kafka.

The metrics test stops Kafka, which must never happen to the shared stack: it runs on a private
one (``private_stack``), and reads ``/metrics`` with prometheus_client's parser.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest

from devstack.stack import Stack
from tests.integration.events.support import (
    AppIds,
    EventSystem,
    PrivateStack,
    RoleLauncher,
    kafka_stopped,
    scrape,
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
        api: {
            "POST /api/chat",
            "chat.turn",
            "tools/call add_task",
            "use_case tasks.add",
            "dapr state read",
            "dapr state transaction",
        },  # conversation memory through daprd
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
            found = jaeger_traces(stack, api, "tools/call add_task")
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
def wait_for_backlog(url: str, check: Any, what: str, limit: float) -> float:
    deadline = time.monotonic() + limit
    while True:
        value = scrape(url).value("todo_outbox_backlog")
        assert value is not None, f"no todo_outbox_backlog in {url}/metrics"
        if check(value) or time.monotonic() > deadline:
            assert check(value), f"{what}: the backlog is {value} after {limit:.0f}s"
            return value
        time.sleep(0.5)


@pytest.mark.timeout(300)
async def test_metrics_show_the_outbox_backlog_rise_while_kafka_is_down_and_drain_to_zero_after(
    private_stack: PrivateStack,
) -> None:
    api = private_stack.launcher.start("api", private_stack.ids.api)
    system = EventSystem(api=api, recurrence=api, audit=api, kafka_brokers=private_stack.brokers,
                         pg_url=private_stack.launcher.pg_url)  # fmt: skip
    url = api.url
    async with system.http("metrics-user") as http:
        assert (await http.post("/api/tasks", json={"title": "before the outage"})).status_code == 201
        wait_for_backlog(url, lambda v: v == 0, "the first write published", 60)
        async with kafka_stopped(private_stack.stack):
            for n in range(5):
                reply = await http.post("/api/tasks", json={"title": f"written while Kafka is down {n}"})
                assert reply.status_code == 201, reply.text
            risen = wait_for_backlog(url, lambda v: v >= 5, "the writes made during the outage", 30)
            await asyncio.sleep(3)  # the relay keeps trying meanwhile; nothing may leave the outbox
            assert scrape(url).value("todo_outbox_backlog") >= 5  # type: ignore[operator]
    wait_for_backlog(url, lambda v: v == 0, "the backlog drained after Kafka came back", 120)
    system.engine.dispose()
    assert risen >= 5
    after = scrape(url)
    assert after.value("todo_relay_process_up") == 1  # the relay's child, through the same scrape
    assert (after.value("todo_relay_published_total") or 0) >= 6
    assert (after.value("todo_relay_publish_duration_seconds_count", topic="task-events") or 0) >= 1
    assert (after.value("todo_relay_lag_seconds_count") or 0) >= 6
    assert after.quantile("todo_relay_lag_seconds", 1.0) >= 3  # type: ignore[operator]  # the outage
    assert after.value("todo_relay_backoff_seconds") == 0
