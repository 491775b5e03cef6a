"""Run an ASGI app (FastAPI, Starlette) with uvicorn in a background thread of this process.

``todo-agent chat`` uses it to start the embedded default when none is running; the tests use
it (through ``devstack.appserver``) to serve apps they build.

>>> with serve_in_thread(app, free_port()) as server:
...     httpx.get(f"{server.url}/healthz")
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import uvicorn


@dataclass
class AppServer:
    port: int
    server: uvicorn.Server = field(repr=False)
    thread: threading.Thread = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> AppServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_in_thread(app: Any, port: int, timeout: float = 15.0) -> AppServer:
    """Start ``app`` on 127.0.0.1:``port``; returns once it listens (RuntimeError otherwise)."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    started = AppServer(port=port, server=server, thread=thread)
    deadline = time.monotonic() + timeout
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError(f"the app server on port {port} stopped while starting")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the app server on port {port} did not start in {timeout}s")
            time.sleep(0.02)
    except BaseException:  # a KeyboardInterrupt too: the caller never gets the server to stop
        started.stop()  # it shuts down what its lifespan started so far
        raise
    return started
