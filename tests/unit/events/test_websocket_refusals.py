"""``/ws`` through a real uvicorn: frames and parameters it cannot use get an error message and a
close code (never a crash), and without sign-in only this server's own pages may open it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from devstack.appserver import AppServer, serve_in_thread
from tests.conftest import JWT_SECRET
from tests.unit.events.support import next_message
from todo_agent.api import app_for
from todo_agent.bootstrap import Container

UNSUPPORTED_DATA = 1003
POLICY_VIOLATION = 1008


@pytest.fixture
def secured(make_container: Callable[..., Container]) -> Iterator[AppServer]:
    with serve_in_thread(app_for(make_container("all", jwt_secret=JWT_SECRET))) as server:
        yield server


async def refusal(ws: Any) -> tuple[str, int | None]:
    """The error message the server sent, and the code it closed with."""
    message = await next_message(ws)
    assert message["type"] == "error", message
    with pytest.raises(websockets.ConnectionClosed):
        await next_message(ws)
    return message["detail"], ws.close_code


async def test_a_binary_auth_frame_gets_an_error_and_close_1003(secured: AppServer) -> None:
    async with websockets.connect(f"ws://127.0.0.1:{secured.port}/ws") as ws:
        await ws.send(json.dumps({"type": "auth", "token": "x"}).encode())
        detail, code = await refusal(ws)
    assert code == UNSUPPORTED_DATA and "text frames" in detail


async def test_a_binary_frame_after_hello_gets_an_error_and_close_1003(
    embedded: tuple[Container, AppServer],
) -> None:
    _container, server = embedded
    async with websockets.connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        assert (await next_message(ws))["type"] == "hello"
        await ws.send(b"\x00\x01")
        detail, code = await refusal(ws)
    assert code == UNSUPPORTED_DATA and "text frames" in detail


@pytest.mark.parametrize("last_event_id", [str(10**30), "-1", "\u0663", "twelve"])
async def test_a_last_event_id_that_is_no_event_id_gets_an_error_and_close_1008(
    embedded: tuple[Container, AppServer], last_event_id: str
) -> None:
    _container, server = embedded
    async with websockets.connect(f"ws://127.0.0.1:{server.port}/ws?last_event_id={last_event_id}") as ws:
        detail, code = await refusal(ws)
    assert code == POLICY_VIOLATION and "last_event_id must be an event id" in detail


async def test_a_resume_beyond_any_event_gets_an_error_and_the_socket_stays_open(
    embedded: tuple[Container, AppServer],
) -> None:
    _container, server = embedded
    async with websockets.connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        assert (await next_message(ws))["type"] == "hello"
        await ws.send(json.dumps({"type": "resume", "last_event_id": 10**30}))
        assert "last_event_id must be an event id" in (await next_message(ws))["detail"]
        await ws.send(json.dumps({"type": "ping"}))
        assert (await next_message(ws, skip=())) == {"type": "pong"}


async def test_without_sign_in_only_this_servers_own_pages_open_the_socket(
    embedded: tuple[Container, AppServer],
) -> None:
    _container, server = embedded
    url = f"ws://127.0.0.1:{server.port}/ws"
    for origin in ("http://evil.example", f"http://localhost:{server.port + 1}"):
        with pytest.raises(InvalidStatus) as refused:
            async with websockets.connect(url, origin=origin):  # type: ignore[arg-type]
                pass
        assert refused.value.response.status_code == 403, origin
    rebound = f"ws://rebound.example:{server.port}/ws"
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(rebound, host="127.0.0.1", port=server.port, proxy=None):
            pass
    assert refused.value.response.status_code == 421  # uvicorn sends the guard's reply itself
    assert b"TODO_ALLOWED_HOSTS" in (refused.value.response.body or b"")
    async with websockets.connect(url, origin=f"http://127.0.0.1:{server.port}") as ws:  # type: ignore[arg-type]
        assert (await next_message(ws))["type"] == "hello"
