"""The embedded default (role "all", SQLite, no Dapr) through a real uvicorn: recurrence, audit
and live updates all happen in-process after commit."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest
import websockets

from auth.tokens import JwtVerifier
from devstack.appserver import AppServer, serve_in_thread
from observability.scrape import Scrape
from tests.conftest import JWT_SECRET
from tests.unit.events.support import next_message, no_message
from todo_agent.api import app_for
from todo_agent.bootstrap import Container

T = TypeVar("T")


@pytest.fixture
def secured(make_container: Callable[..., Container]) -> Iterator[tuple[Container, AppServer]]:
    container = make_container("all", jwt_secret=JWT_SECRET)
    server = serve_in_thread(app_for(container))
    yield container, server
    server.stop()


async def _poll(read: Callable[[], Awaitable[T]], done: Callable[[T], bool], what: str) -> T:
    for _ in range(100):
        value = await read()
        if done(value):
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last value: {value!r}")


async def test_without_auth_the_socket_acts_for_the_local_user_and_sees_recurrence_happen(
    embedded: tuple[Container, AppServer],
) -> None:
    container, server = embedded
    async with websockets.connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        assert await next_message(ws) == {"type": "hello", "user_id": "local"}
        async with httpx.AsyncClient(base_url=server.url) as http:
            # The relay's counters are the process's (every test's relay adds to them).
            published_before = Scrape.of((await http.get("/metrics")).text).value(
                "todo_relay_published_total"
            )
            published_before = published_before or 0
            task = (
                await http.post(
                    "/api/tasks", json={"title": "Water the plants", "recurrence": "every 3 days"}
                )
            ).json()
            assert (await next_message(ws))["event_type"] == "created"
            await http.post(f"/api/tasks/{task['id']}/complete")
            completed, following = await next_message(ws), await next_message(ws)
            assert (completed["event_type"], completed["task_id"]) == ("completed", task["id"])
            assert following["event_type"] == "created" and following["task"]["title"] == "Water the plants"
            assert int(following["id"]) > int(completed["id"])

            pending = (await http.get("/api/tasks")).json()["items"]
            assert [t["id"] for t in pending] == [following["task_id"]]

            async def audit() -> list[Any]:
                return list((await http.get("/api/audit")).json()["items"])

            async def metrics() -> Scrape:
                return Scrape.of((await http.get("/metrics")).text)

            entries = await _poll(audit, lambda items: len(items) == 3, "three audit entries")
            assert [e["action"] for e in entries] == ["created", "completed", "created"]
            scrape = await _poll(metrics, lambda m: m.value("todo_outbox_backlog") == 0, "an empty backlog")
            published = (scrape.value("todo_relay_published_total") or 0) - published_before
            assert published == 3 and scrape.value("todo_websocket_connections") == 1
            assert container.bus is not None and not container.bus.dead_letters


async def test_every_connection_of_the_owner_gets_the_update_and_nobody_else_does(
    secured: tuple[Container, AppServer], verifier: JwtVerifier
) -> None:
    _container, server = secured
    alice, bob = verifier.issue("alice", ttl=300), verifier.issue("bob", ttl=300)
    url = f"ws://127.0.0.1:{server.port}/ws"
    async with (
        websockets.connect(f"{url}?token={alice}") as tab1,
        websockets.connect(url) as tab2,
        websockets.connect(f"{url}?token={bob}") as other,
    ):
        await tab2.send(json.dumps({"type": "auth", "token": alice}))
        for ws, user in ((tab1, "alice"), (tab2, "alice"), (other, "bob")):
            assert await next_message(ws) == {"type": "hello", "user_id": user}
        async with httpx.AsyncClient(
            base_url=server.url, headers={"authorization": f"Bearer {alice}"}
        ) as http:
            task = (await http.post("/api/tasks", json={"title": "Pay rent"})).json()
            await http.patch(f"/api/tasks/{task['id']}", json={"title": "Pay the rent"})
            await http.delete(f"/api/tasks/{task['id']}")
        for tab in (tab1, tab2):
            kinds = [(await next_message(tab))["event_type"] for _ in range(3)]
            assert kinds == ["created", "updated", "deleted"]
        await no_message(other)


async def test_a_bad_token_is_refused(secured: tuple[Container, AppServer]) -> None:
    _container, server = secured
    async with websockets.connect(f"ws://127.0.0.1:{server.port}/ws?token=nonsense") as ws:
        assert (await next_message(ws))["type"] == "error"
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_a_reconnecting_client_gets_what_it_missed_then_live_updates(
    embedded: tuple[Container, AppServer],
) -> None:
    _container, server = embedded
    url = f"ws://127.0.0.1:{server.port}/ws"
    async with httpx.AsyncClient(base_url=server.url) as http:
        async with websockets.connect(url) as ws:
            await next_message(ws)
            await http.post("/api/tasks", json={"title": "one"})
            last_seen = (await next_message(ws))["id"]
        for title in ("two", "three"):  # while disconnected
            await http.post("/api/tasks", json={"title": title})
        async with websockets.connect(f"{url}?last_event_id={last_seen}") as ws:
            await next_message(ws)
            missed = [(await next_message(ws))["task"]["title"] for _ in range(2)]
            await http.post("/api/tasks", json={"title": "four"})
            live = await next_message(ws)
            await no_message(ws, wait=0.3)
        async with websockets.connect(url) as ws:  # the same, asked for with a message
            await next_message(ws)
            await ws.send(json.dumps({"type": "resume", "last_event_id": last_seen}))
            again = {(await next_message(ws))["task"]["title"] for _ in range(3)}
            await no_message(ws, wait=0.3)
    assert missed == ["two", "three"] and live["task"]["title"] == "four"
    assert again == {"two", "three", "four"}
