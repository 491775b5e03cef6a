"""``todo_agent.local_server.serve_in_thread``: a server that does not come up is not left behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from starlette.applications import Starlette

from devstack.procs import free_port
from todo_agent.local_server import serve_in_thread


def test_a_server_that_does_not_start_in_time_is_shut_down_before_the_caller_hears_of_it() -> None:
    happened: list[str] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        happened.append("starting")
        await asyncio.sleep(1.0)  # a slow start-up
        happened.append("started")
        yield
        happened.append("stopped")

    with pytest.raises(RuntimeError, match="did not start in 0.2s"):
        serve_in_thread(Starlette(lifespan=lifespan), free_port(), timeout=0.2)
    # What the lifespan started (an outbox relay's child process, say) is stopped again by the
    # time the error (or a KeyboardInterrupt) reaches the caller, who has no server to stop.
    assert happened == ["starting", "started", "stopped"]
