"""What a user does, through the api's Service (NodePort 30080) of the real cluster: MCP over
HTTP with a JWT, recurring tasks, a reminder through the in-cluster Dapr scheduler to a
WebSocket, a chat turn whose conversation lives in the Dapr state store."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.cluster.support import Deployed, eventually, tab

pytestmark = pytest.mark.cluster


def user(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def audit_actions(deployed: Deployed, owner: str) -> list[tuple[Any, str]]:
    async with deployed.http(owner) as http:
        response = await http.get("/api/audit")
        assert response.status_code == 200, response.text
        return [(e["task_id"], e["action"]) for e in response.json()["items"]]


async def test_a_task_added_over_mcp_with_a_jwt_reaches_the_audit_role_through_kafka(
    deployed: Deployed,
) -> None:
    owner = user("mcp")
    headers = {"Authorization": f"Bearer {deployed.token(owner)}"}
    transport = streamable_http_client(
        f"{deployed.api_url}/mcp", http_client=httpx2.AsyncClient(headers=headers, timeout=30)
    )
    async with Client(transport) as client:
        result = await client.call_tool("add_task", {"title": "Renew the passport", "priority": "high"})
    assert not result.is_error, result.content
    task = result.structured_content
    found: list[tuple[Any, str]] = []

    def audited() -> bool:
        found[:] = asyncio.run(audit_actions(deployed, owner))
        return bool(found)

    await eventually(audited, "the audit entry", limit=90)
    assert found == [(task["id"], "created")]
    rows = deployed.rows("select user_id, action from audit_log where task_id = :id", id=task["id"])
    assert [(r.user_id, r.action) for r in rows] == [(owner, "created")]


async def test_completing_a_recurring_task_creates_the_next_occurrence_once(deployed: Deployed) -> None:
    owner = user("recur")
    async with deployed.http(owner) as http:
        created = await http.post(
            "/api/tasks",
            json={"title": "Water the plants", "recurrence": "every 3 days", "due": "2030-01-01T08:00:00Z"},
        )
        assert created.status_code == 201, created.text
        assert (await http.post(f"/api/tasks/{created.json()['id']}/complete")).status_code == 200
        pending: list[dict[str, Any]] = []

        async def poll() -> bool:
            pending[:] = (await http.get("/api/tasks")).json()["items"]
            return bool(pending)

        deadline = asyncio.get_running_loop().time() + 90
        while not await poll():
            assert asyncio.get_running_loop().time() < deadline, "no next occurrence after 90 s"
            await asyncio.sleep(0.5)
        await asyncio.sleep(3)  # a duplicate occurrence would show up by now
        await poll()
    assert [(t["title"], t["due_at"]) for t in pending] == [("Water the plants", "2030-01-04T08:00:00Z")]


async def test_a_reminder_20_seconds_ahead_fires_once_to_the_owners_websocket(deployed: Deployed) -> None:
    owner = user("remind")
    async with deployed.http(owner) as http, tab(deployed.ws_url(owner)) as window:
        task = (await http.post("/api/tasks", json={"title": "Call mom"})).json()
        at = datetime.now(UTC) + timedelta(seconds=20)
        response = await http.put(f"/api/tasks/{task['id']}/reminder", json={"at": iso(at)})
        assert response.status_code == 200, response.text
        remind_at = datetime.fromisoformat(response.json()["remind_at"])
        await eventually(lambda: bool(window.of_type("notification")), "the reminder", limit=120)
        arrived = datetime.now(UTC)
        await asyncio.sleep(10)  # a second delivery would arrive by now
    notes = window.of_type("notification")
    print(f"reminder reached the WebSocket {(arrived - remind_at).total_seconds():.1f} s after its time")
    assert [(n["task_id"], n["title"]) for n in notes] == [(task["id"], "Call mom")]
    assert arrived >= remind_at


async def test_a_chat_turn_keeps_its_conversation_in_the_dapr_state_store(deployed: Deployed) -> None:
    owner = user("chat")
    async with deployed.http(owner) as http:
        response = await http.post("/api/chat", json={"message": "add a task to buy milk tomorrow"})
        assert response.status_code == 200, response.text
        conversation = response.json()["conversation_id"]
        again = await http.get(f"/api/conversations/{conversation}")
        assert again.status_code == 200, again.text
    keys = [r.key for r in deployed.rows("select key from dapr_state where key like :k", k=f"%{owner}%")]
    assert any(k.startswith(f"todo-api||conversation:{owner}:{conversation}") for k in keys), keys
