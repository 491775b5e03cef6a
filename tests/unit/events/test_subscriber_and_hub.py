"""The Dapr subscriber route (token, CloudEvent parsing, replies) and the hub's fan-out rules."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from events.ports import Delivery, Outcome, Subscription
from events.realtime import QUEUE_SIZE, Connection, WebSocketHub, client_message
from todo_agent.api import create_app, serve_subscriptions
from todo_agent.bootstrap import Container

EVENT = {
    "specversion": "1.0", "id": "42", "source": "todo-agent", "type": "todo.task.created.v1",
    "topic": "task-events", "pubsubname": "kafka-pubsub", "datacontenttype": "application/json",
    "data": {"user_id": "alice", "task_id": 7},
}  # fmt: skip


def _dapr_app(container: Container, outcome: Outcome | Exception, seen: list[Delivery]) -> FastAPI:
    async def handler(delivery: Delivery) -> Outcome:
        seen.append(delivery)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    subscription = Subscription(
        topic="task-events", route="/events/task-events", consumer="t", handler=handler
    )
    return create_app(container, extensions=[lambda app, c: serve_subscriptions(app, c, [subscription])])


async def _post(app: FastAPI, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return await client.post("/events/task-events", content=content, headers=headers or {})


async def test_the_route_answers_only_the_sidecar_and_replies_with_the_handlers_outcome(
    make_container: Callable[..., Container],
) -> None:
    container = make_container("audit", dapr_http_port=3999, app_api_token="s3cret")
    seen: list[Delivery] = []
    app = _dapr_app(container, Outcome.SUCCESS, seen)

    assert (await _post(app, EVENT)).status_code == 401
    assert (await _post(app, EVENT, {"dapr-api-token": "wrong"})).status_code == 401
    reply = await _post(app, EVENT, {"dapr-api-token": "s3cret"})
    assert reply.status_code == 200 and reply.json() == {"status": "SUCCESS"}
    assert seen[0].id == "42" and seen[0].data["task_id"] == 7 and seen[0].topic == "task-events"


async def test_a_failing_handler_means_retry_and_garbage_means_drop(
    make_container: Callable[..., Container],
) -> None:
    container = make_container("audit", dapr_http_port=3999)
    seen: list[Delivery] = []
    assert (await _post(_dapr_app(container, RuntimeError("db"), seen), EVENT)).json() == {"status": "RETRY"}
    assert (await _post(_dapr_app(container, Outcome.DROP, seen), EVENT)).json() == {"status": "DROP"}
    assert (await _post(_dapr_app(container, Outcome.SUCCESS, seen), b"not json")).json() == {
        "status": "DROP"
    }
    string_data = {**EVENT, "data": json.dumps(EVENT["data"])}
    assert (await _post(_dapr_app(container, Outcome.SUCCESS, seen), string_data)).json() == {
        "status": "SUCCESS"
    }


async def test_without_dapr_the_subscription_goes_to_the_in_process_bus(
    make_container: Callable[..., Container],
) -> None:
    container = make_container("audit")
    seen: list[Delivery] = []
    _dapr_app(container, Outcome.SUCCESS, seen)
    assert container.bus is not None
    await container.bus.publish("task-events", [EVENT], partition_key="alice")
    assert [d.id for d in seen] == ["42"]


def test_client_messages_for_task_changes_and_notifications() -> None:
    data = {"event_type": "completed", "task_id": 3, "task_data": {"id": 3}, "changes": {}, "timestamp": "t"}
    assert client_message("9", "todo.task.completed.v1", data) == {
        "type": "task", "id": "9", "event_type": "completed", "task_id": 3, "task": {"id": 3},
        "changes": {}, "timestamp": "t",
    }  # fmt: skip
    note = {"user_id": "a", "task_id": 3, "title": "Pay rent", "body": "due soon", "notification_id": 5}
    assert client_message("10", "todo.notification.created.v1", note) == {
        **note,
        "type": "notification",
        "id": "10",
    }
    assert client_message("11", "todo.something.else.v1", {}) is None


class _SilentSocket:
    """A socket whose client never reads: sends block."""

    async def send_text(self, _text: str) -> None:
        await asyncio.sleep(3600)


async def test_a_client_that_stops_reading_is_dropped_and_the_others_still_get_everything() -> None:
    hub = WebSocketHub()
    slow = Connection(_SilentSocket(), "alice")  # type: ignore[arg-type]
    fast = Connection(_SilentSocket(), "alice")  # type: ignore[arg-type]
    other = Connection(_SilentSocket(), "bob")  # type: ignore[arg-type]
    for connection in (slow, fast, other):
        hub.add(connection)
    for n in range(QUEUE_SIZE):
        assert await hub.send_to_user("alice", {"type": "task", "id": str(n)}) == 2
        fast.queue.get_nowait()  # the fast client keeps up
    assert await hub.send_to_user("alice", {"type": "task", "id": "last"}) == 1
    assert slow.closed.is_set() and hub.dropped_clients == 1
    assert (fast.queue.get_nowait() or {}).get("id") == "last"
    assert other.queue.empty()


async def test_a_bulk_delivery_gets_one_status_per_entry(make_container: Callable[..., Container]) -> None:
    container = make_container("api", dapr_http_port=3999)
    seen: list[Delivery] = []
    app = _dapr_app(container, Outcome.SUCCESS, seen)
    bulk = {
        "id": "b1", "type": "com.dapr.event.sent.bulk", "topic": "task-events", "pubsubname": "kafka-pubsub",
        "entries": [
            {"entryId": "e1", "event": {**EVENT, "id": "1"}, "contentType": "application/cloudevents+json"},
            {"entryId": "e2", "event": "not json", "contentType": "text/plain"},
            {"entryId": "e3", "event": {**EVENT, "id": "3"}, "contentType": "application/cloudevents+json"},
        ],
    }  # fmt: skip
    reply = await _post(app, bulk)
    assert reply.json() == {"statuses": [
        {"entryId": "e1", "status": "SUCCESS"}, {"entryId": "e2", "status": "DROP"},
        {"entryId": "e3", "status": "SUCCESS"},
    ]}  # fmt: skip
    assert [d.id for d in seen] == ["1", "3"]


async def test_a_send_that_never_completes_drops_the_socket_after_the_send_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from events import realtime

    monkeypatch.setattr(realtime, "SEND_TIMEOUT", 0.2)
    stuck = Connection(_SilentSocket(), "alice")  # type: ignore[arg-type]
    stuck.offer({"type": "task", "id": "1"})
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(stuck.send_loop(), 5)
    assert stuck.closed.is_set() and asyncio.get_running_loop().time() - started < 2


class _CountingSocket:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send_text(self, text: str) -> None:
        self.sent.append(text)


async def test_a_socket_gets_its_queued_messages_in_order_without_repeats() -> None:
    socket = _CountingSocket()
    connection = Connection(socket, "alice")  # type: ignore[arg-type]
    for n in [*range(300), 5, 7]:  # 5 and 7 again: a replay overlapping live messages
        connection.offer({"type": "task", "id": str(n)})
    connection.queue.put_nowait(None)
    await asyncio.wait_for(connection.send_loop(), 5)
    assert [json.loads(text)["id"] for text in socket.sent] == [str(n) for n in range(300)]
