"""Run an ASGI app (FastAPI, Starlette) with uvicorn in a background thread, for tests; or the
embedded default (``todo-agent run``) as a process of its own.

The server itself is the product's (:mod:`todo_agent.local_server`, which ``todo-agent chat``
uses too); this adds the stack's port picker, which never hands out one port twice in a row.

>>> with serve_in_thread(app) as server:
...     httpx.get(f"{server.url}/healthz")
>>> proc, url, log = start_embedded(folder, {"TODO_TRACING": "on"})   # stop_pid(proc.pid) after
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from devstack.errors import StackError
from devstack.procs import free_port, http_status, spawn, stop_pid, wait_until
from todo_agent.local_server import AppServer
from todo_agent.local_server import serve_in_thread as _serve_in_thread

__all__ = ["AppServer", "serve_in_thread", "start_embedded"]

TODO_AGENT = str(Path(sys.executable).with_name("todo-agent"))


def serve_in_thread(app: Any, port: int | None = None, timeout: float = 15.0) -> AppServer:
    """Start ``app`` on 127.0.0.1:``port`` (free one by default); returns once it listens."""
    try:
        return _serve_in_thread(app, port or free_port(), timeout)
    except RuntimeError as exc:
        raise StackError(f"the test {exc}") from exc


def start_embedded(folder: Path, env: Mapping[str, str]) -> tuple[subprocess.Popen[bytes], str, Path]:
    """``todo-agent run`` on a fresh SQLite database in ``folder`` (UTC), with ``env`` over this
    process's environment less its ``OTEL_*``/``TODO_*`` variables; returns once ``/healthz``
    answers: the process, its URL and its log (``folder/app.log``). A start that fails (or is
    interrupted) stops the process before raising."""
    port, log = free_port(), folder / "app.log"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TODO_"))}
    full = {**base, "TODO_DATABASE_URL": f"sqlite:///{folder / 'todo.db'}", "TODO_TIMEZONE": "UTC", **env}
    proc = spawn([TODO_AGENT, "run", "--port", str(port)], log_path=log, env=full)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_status(f"{url}/healthz") == 200, what="the embedded app", timeout=60,
                   log_path=log, proc=proc)  # fmt: skip
    except BaseException:  # not up (or Ctrl-C): the caller has no process to stop
        stop_pid(proc.pid, timeout=10)
        raise
    return proc, url, log
