"""Tracing in the embedded default (``todo-agent run``: SQLite, the in-process bus), exported to a
real OTLP/HTTP endpoint: a small receiver (``devstack.otlp``) that decodes what the app sends.

The app runs as its own process (tracing is set up once per process). One REST write must be one
trace: the request, the use case, the relay's publish and both consumers' applies (its SQL
statements too, with ``TODO_TRACING_SQL=on``); the
outbox row keeps the writer's ``traceparent``; log lines are JSON off a terminal; and with the
switch off nothing is sent, even to a configured endpoint.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devstack.appserver import start_embedded
from devstack.otlp import TraceReceiver
from devstack.procs import stop_pid

SQL_VERBS = ("SELECT", "INSERT", "UPDATE", "DELETE")


@pytest.fixture
def collector() -> Iterator[TraceReceiver]:
    with TraceReceiver() as receiver:
        yield receiver


def test_one_rest_write_is_one_trace_from_request_through_relay_to_both_consumers(
    tmp_path: Path, collector: TraceReceiver
) -> None:
    env = {"TODO_TRACING": "on", "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
           "OTEL_BSP_SCHEDULE_DELAY": "100", "TODO_LOG_LEVEL": "INFO"}  # fmt: skip
    proc, url, log = start_embedded(tmp_path, env)
    try:
        reply = httpx.post(f"{url}/api/tasks", json={"title": "water the plants", "recurrence": "daily"})
        assert reply.status_code == 201, reply.text
        task_id = reply.json()["id"]
        assert httpx.post(f"{url}/api/tasks/{task_id}/complete").status_code == 200
        wanted = {"POST /api/tasks", "use_case tasks.add", "task-events publish", "audit apply"}
        completion = {"POST /api/tasks/{task_id}/complete", "use_case tasks.complete", "recurrence apply"}

        def traced() -> bool:
            by_trace: dict[str, set[str]] = {}
            for span in collector.spans:
                by_trace.setdefault(span.trace_id, set()).add(span.name)
            return any(wanted <= names for names in by_trace.values()) and any(
                completion <= names for names in by_trace.values()
            )

        deadline = time.monotonic() + 30
        while not traced() and time.monotonic() < deadline:
            time.sleep(0.2)
        names = sorted({span.name for span in collector.spans})
        assert traced(), f"no single trace holds {wanted} and another {completion}: spans {names}"
        assert {span.service for span in collector.spans} == {"todo-agent"}
        assert not [n for n in names if n.startswith(SQL_VERBS)], "SQL spans without TODO_TRACING_SQL=on"
    finally:
        stop_pid(proc.pid, timeout=10)
    with sqlite3.connect(tmp_path / "todo.db") as db:
        contexts = [row[0] for row in db.execute("select trace_context from outbox order by id")]
    assert contexts and all(c and c.startswith("00-") and len(c) == 55 for c in contexts), contexts
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert lines, f"no JSON log lines (stderr is not a terminal):\n{log.read_text()[:2000]}"
    assert all({"ts", "level", "logger", "msg"} <= set(line) for line in lines)


def test_with_sql_tracing_on_each_statement_of_a_write_is_a_span_in_the_requests_trace(
    tmp_path: Path, collector: TraceReceiver
) -> None:
    env = {"TODO_TRACING": "on", "TODO_TRACING_SQL": "on", "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
           "OTEL_BSP_SCHEDULE_DELAY": "100"}  # fmt: skip
    proc, url, _ = start_embedded(tmp_path, env)
    try:
        assert httpx.post(f"{url}/api/tasks", json={"title": "sweep the floor"}).status_code == 201

        def write_trace() -> set[str]:
            by_trace: dict[str, set[str]] = {}
            for span in collector.spans:
                by_trace.setdefault(span.trace_id, set()).add(span.name)
            return next((names for names in by_trace.values() if "use_case tasks.add" in names), set())

        deadline = time.monotonic() + 30
        while not any(n.startswith("INSERT") for n in write_trace()) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop_pid(proc.pid, timeout=10)
    names = write_trace()
    assert any(n.startswith("INSERT") for n in names), f"no INSERT span in the write's trace: {names}"


def test_tracing_switched_off_sends_no_span_even_with_an_endpoint_set(
    tmp_path: Path, collector: TraceReceiver
) -> None:
    env = {
        "TODO_TRACING": "off",
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    proc, url, _ = start_embedded(tmp_path, env)
    try:
        assert httpx.post(f"{url}/api/tasks", json={"title": "quiet"}).status_code == 201
        time.sleep(1.0)
    finally:
        stop_pid(proc.pid, timeout=10)
    assert collector.requests == 0
    with sqlite3.connect(tmp_path / "todo.db") as db:
        assert [row[0] for row in db.execute("select trace_context from outbox")] == [None]


def test_request_spans_are_named_after_the_route_continue_the_callers_trace_and_skip_probes(
    tmp_path: Path, collector: TraceReceiver
) -> None:
    """FastAPI's own request spans (``todo_agent.telemetry.request_spans``): the route template,
    never the raw path; a caller's ``traceparent`` is the parent; MCP's requests are named after
    ``/mcp`` (the MCP app's own route); probes and scrapes make no span."""
    env = {"TODO_TRACING": "on", "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
           "OTEL_BSP_SCHEDULE_DELAY": "100"}  # fmt: skip
    proc, url, _ = start_embedded(tmp_path, env)
    caller = "4bf92f3577b34da6a3ce929d0e0e4736"
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            for probe in ("/healthz", "/readyz", "/metrics"):
                assert http.get(probe).status_code == 200, probe
            created = http.post("/api/tasks", json={"title": "traced"},
                                headers={"traceparent": f"00-{caller}-00f067aa0ba902b7-01"})  # fmt: skip
            assert created.status_code == 201, created.text
            assert http.get(f"/api/tasks/{created.json()['id']}").status_code == 200
            initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                          "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                                     "clientInfo": {"name": "span-test", "version": "1"}}}  # fmt: skip
            mcp = http.post("/mcp", json=initialize,
                            headers={"accept": "application/json, text/event-stream"})  # fmt: skip
            assert mcp.status_code == 200, mcp.text
        wanted = {"POST /api/tasks", "GET /api/tasks/{task_id}", "POST /mcp"}
        deadline = time.monotonic() + 30
        while not wanted <= {span.name for span in collector.spans} and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop_pid(proc.pid, timeout=10)
    names = {span.name for span in collector.spans}
    assert wanted <= names, f"request spans {sorted(names)}"
    assert not [n for n in names if any(p in n for p in ("/healthz", "/readyz", "/metrics"))], sorted(names)
    assert not [n for n in names if n.startswith(("GET /api/tasks/", "POST /api/tasks/")) and "{" not in n]
    created_in = {span.trace_id for span in collector.spans if span.name == "POST /api/tasks"}
    assert created_in == {caller}, f"the write's request span is not in the caller's trace: {created_in}"
