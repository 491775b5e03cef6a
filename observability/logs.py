"""One log line per event: JSON when stderr is not a terminal (a container, a service manager,
CI), plain text for a person at a terminal; both carry the trace and span ids when a span is
current, so a line leads to its trace.

    configure_logging("INFO")                  # TODO_LOG_FORMAT=json|text overrides the choice
    log.info("task added for %s", user_ref(user_id))

A JSON line: ``{"ts": "2026-12-07T03:04:05.123Z", "level": "INFO", "logger": "events.audit",
"msg": "...", "trace_id": "…32 hex…", "span_id": "…16 hex…"}`` (plus ``exc`` with the
traceback for an exception). What goes into a message is the caller's choice, so the rule is
the callers': user ids through :func:`user_ref` (a short hash), never a token, never a task's
title or description at INFO or above.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Final

from observability.tracing import current_ids

FORMAT_ENV: Final = "TODO_LOG_FORMAT"
_HANDLER_NAME: Final = "todo-agent-stderr"
_TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s%(trace_suffix)s"
#: HTTP clients log one INFO line per request (every MCP call of the agent, every publish).
_PER_REQUEST_LOGGERS: Final = ("httpx", "httpx2", "httpcore", "httpcore2")


def user_ref(user_id: str | None) -> str:
    """A user id as logs show it: the first 12 hex digits of its SHA-256 (stable, not reversible
    in practice for the ids people pick, and short enough to grep)."""
    if not user_id:
        return "-"
    return "u:" + hashlib.sha256(user_id.encode()).hexdigest()[:12]


class _TraceIds(logging.Filter):
    """Adds ``trace_id``/``span_id`` (and the text suffix) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        ids = current_ids()
        record.trace_id, record.span_id = ids if ids else (None, None)
        record.trace_suffix = f" trace_id={ids[0]} span_id={ids[1]}" if ids else ""
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if getattr(record, "trace_id", None):
            line["trace_id"] = record.trace_id  # type: ignore[attr-defined]
            line["span_id"] = record.span_id  # type: ignore[attr-defined]
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def wants_json(stream: object = None) -> bool:
    chosen = os.environ.get("TODO_LOG_FORMAT", "").strip().lower()  # FORMAT_ENV
    if chosen in ("json", "text"):
        return chosen == "json"
    isatty = getattr(stream or sys.stderr, "isatty", None)
    return not (isatty is not None and isatty())


def configure_logging(level: str) -> None:
    """Root logging at ``level`` to stderr, JSON or text (see the module docstring). Calling it
    again replaces the handler it added before (others, such as a test's capture, stay)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_TraceIds())
    handler.setFormatter(JsonFormatter() if wants_json() else logging.Formatter(_TEXT_FORMAT))
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == _HANDLER_NAME:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    if level.upper() != "DEBUG":
        for name in _PER_REQUEST_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
