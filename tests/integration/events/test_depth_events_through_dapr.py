"""List events, batch events, a recurring parent's subtasks and an undo travel outbox -> relay ->
daprd -> Kafka -> daprd -> the recurrence, audit and api roles (each its own process) and the
owner's WebSocket: every event once everywhere, list events of their own type."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest
import websockets

from tests.integration.events.support import EventSystem, records_since, wait_until_async
from tests.integration.kafka_support import end_offsets
from tests.websocket_tab import Tab

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def tab(url: str) -> AsyncIterator[Tab]:
    async with websockets.connect(url) as ws:
        client = Tab(ws)
        await wait_until_async(lambda: bool(client.messages), "hello", limit=10)
        yield client


async def test_lists_batches_subtasks_and_undo_reach_kafka_recurrence_audit_and_sockets(
    event_system: EventSystem, session_id: str
) -> None:
    system, dana = event_system, f"dana-{session_id}"
    before = end_offsets(system.kafka_brokers, "task-events")
    async with tab(system.ws_url(dana)) as socket, system.http(dana) as http:
        home = (await http.post("/api/lists", json={"name": "Home"})).json()
        weekly = (await http.post("/api/tasks", json={
            "title": "Weekly clean", "recurrence": "weekly", "due": "2030-01-07T09:00:00Z", "list": "Home",
        })).json()  # fmt: skip
        children = {"tasks": [{"title": t, "parent_id": weekly["id"]} for t in ("Hoover", "Mop")]}
        assert (await http.post("/api/tasks/batch", json=children)).status_code == 201
        done = (
            await http.post("/api/tasks/bulk", json={"action": "complete", "filter": {"list": "Home"}})
        ).json()
        assert len(done["changed"]) == 3

        # 1 list + 3 created + 3 completed, then the next occurrence and its 2 fresh subtasks
        await wait_until_async(
            lambda: len(system.outbox_ids(dana)) == 10, "the next occurrence and its subtasks"
        )
        following = [t for t in (await http.get("/api/tasks", params={"list": "Home"})).json()["items"]]
        parent = next(t for t in following if t["parent_id"] is None)
        assert parent["due_at"] == "2030-01-14T09:00:00Z"
        assert sorted(t["title"] for t in following if t["parent_id"] == parent["id"]) == ["Hoover", "Mop"]

        undone = await http.post("/api/undo", json={"change_id": done["change_id"]})
        assert undone.status_code == 200 and len(undone.json()["changed"]) == 3
        await wait_until_async(lambda: len(system.outbox_ids(dana)) == 13, "the undo's events")
        expected = system.outbox_ids(dana)
        await wait_until_async(lambda: sorted(system.audit_event_ids(dana)) == sorted(expected), "audit")
        seen = lambda: sorted(m["id"] for m in socket.messages if m["type"] in ("task", "list"))  # noqa: E731
        await wait_until_async(lambda: seen() == sorted(expected), "the socket")
        await asyncio.sleep(0.5)
        assert seen() == sorted(expected)  # nothing twice
        listed = [m for m in socket.messages if m["type"] == "list"]
        assert [(m["event_type"], m["list_id"]) for m in listed] == [("created", home["id"])]
        batch = [
            m for m in socket.messages if m["type"] == "task" and m.get("change_id") == done["change_id"]
        ]
        assert len(batch) == 3

    audit = (await system.http(dana).get("/api/audit")).json()["items"]
    assert {e["action"] for e in audit} >= {"list_created", "created", "completed", "uncompleted"}
    records = records_since(
        system.kafka_brokers, before, lambda e: e.get("data", {}).get("user_id") == dana, expected=13
    )
    assert sorted(e["id"] for _, e in records) == sorted(expected)
    types = [e["type"] for _, e in records]
    assert types.count("todo.list.created.v1") == 1 and types.count("todo.task.completed.v1") == 3
    assert all(json.dumps(e["data"]) for _, e in records)
