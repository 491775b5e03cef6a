"""Log lines: JSON off a terminal, with the current span's trace and span ids; user ids hashed."""

from __future__ import annotations

import io
import json
import logging

import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from observability import logs
from observability.logs import JsonFormatter, user_ref


def test_a_user_id_in_a_log_line_is_a_short_stable_hash() -> None:
    assert user_ref("alice@example.com") == user_ref("alice@example.com")
    assert user_ref("alice@example.com") != user_ref("bob@example.com")
    assert user_ref("alice@example.com").startswith("u:") and len(user_ref("alice@example.com")) == 14
    assert "alice" not in user_ref("alice@example.com") and user_ref(None) == "-"


def test_a_json_line_carries_the_trace_and_span_of_the_current_span(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(logs.FORMAT_ENV, "json")
    logs.configure_logging("INFO")
    root = logging.getLogger()
    ours = next(h for h in root.handlers if h.get_name() == "todo-agent-stderr")
    stream = io.StringIO()
    assert isinstance(ours, logging.StreamHandler) and isinstance(ours.formatter, JsonFormatter)
    ours.setStream(stream)
    context = SpanContext(trace_id=0xABC, span_id=0xDEF, is_remote=False, trace_flags=TraceFlags(1))
    try:
        with trace.use_span(NonRecordingSpan(context)):
            logging.getLogger("events.audit").info("applied event %s", "42")
        logging.getLogger("events.audit").warning("outside any span")
    finally:
        root.removeHandler(ours)
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (
        inside["msg"] == "applied event 42"
        and inside["level"] == "INFO"
        and inside["logger"] == "events.audit"
    )
    assert (inside["trace_id"], inside["span_id"]) == (f"{0xABC:032x}", f"{0xDEF:016x}")
    assert "trace_id" not in outside and outside["level"] == "WARNING"
