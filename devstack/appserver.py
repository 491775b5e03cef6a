"""Run an ASGI app (FastAPI, Starlette) with uvicorn in a background thread, for tests.

The server itself is the product's (:mod:`todo_agent.local_server`, which ``todo-agent chat``
uses too); this adds the stack's port picker, which never hands out one port twice in a row.

>>> with serve_in_thread(app) as server:
...     httpx.get(f"{server.url}/healthz")
"""

from __future__ import annotations

from typing import Any

from devstack.errors import StackError
from devstack.procs import free_port
from todo_agent.local_server import AppServer
from todo_agent.local_server import serve_in_thread as _serve_in_thread

__all__ = ["AppServer", "serve_in_thread"]


def serve_in_thread(app: Any, port: int | None = None, timeout: float = 15.0) -> AppServer:
    """Start ``app`` on 127.0.0.1:``port`` (free one by default); returns once it listens."""
    try:
        return _serve_in_thread(app, port or free_port(), timeout)
    except RuntimeError as exc:
        raise StackError(f"the test {exc}") from exc
