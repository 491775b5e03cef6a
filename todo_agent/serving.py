"""Serve a role's app with uvicorn, and stop within a grace period whatever is still running.

    serve(app, host="127.0.0.1", port=8000, grace=25.0)

On SIGTERM or SIGINT uvicorn stops taking connections, closes the WebSockets and waits for the
requests in flight: here they get half of ``grace`` (``TODO_SHUTDOWN_GRACE_SECONDS``), then they
are cancelled and the lifespan's shutdown runs (the outbox relay finishes its round and stops).
Nothing can hold the process past ``grace``: a request's worker thread waiting on a lock the
database does not grant, or a call that does not return, would otherwise keep it running
(uvicorn waits for requests without a limit, and the interpreter joins every worker thread on
its way out) until the platform kills it. At ``grace`` the process exits with code 1; what it
left uncommitted is rolled back by the database, and the outbox keeps what was committed.
"""

from __future__ import annotations

import logging
import os
import threading
from types import FrameType
from typing import Any

import uvicorn

log = logging.getLogger(__name__)


class _BoundedServer(uvicorn.Server):
    """uvicorn's server with a deadline set by the first signal to stop."""

    def __init__(self, config: uvicorn.Config, grace: float) -> None:
        super().__init__(config)
        self._grace = grace
        self._deadline: threading.Timer | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._deadline is None:
            self._deadline = threading.Timer(self._grace, _exit_now, args=(self._grace,))
            self._deadline.daemon = True
            self._deadline.start()
        super().handle_exit(sig, frame)


def _exit_now(grace: float) -> None:
    log.error(
        "still running %.0fs after the signal to stop (TODO_SHUTDOWN_GRACE_SECONDS): exiting now", grace
    )
    logging.shutdown()
    os._exit(1)


def serve(app: Any, *, host: str, port: int, grace: float) -> None:
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=max(1, int(grace / 2))
    )
    _BoundedServer(config, grace).run()
