"""The six MCP tools through the real protocol: in-memory, stdio (a spawned process) and
streamable HTTP against a running server with tokens for two users."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import httpx
import httpx2
import jwt
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from auth.tokens import JwtVerifier
from tests.conftest import JWT_SECRET
from tests.integration.mcp.support import hints
from todo_agent.api import app_for
from todo_agent.bootstrap import bootstrap

pytestmark = pytest.mark.integration

TOOLS = {
    "add_task", "update_task", "complete_task", "delete_task", "list_tasks", "set_reminder",
    "add_tasks", "change_tasks", "delete_tasks", "lists", "edit_list", "undo",
}  # fmt: skip


def structured(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    return result.structured_content


def error_text(result: Any) -> str:
    assert result.is_error, result.structured_content
    return " ".join(c.text for c in result.content)


async def test_tools_are_described_and_annotated(make_settings) -> None:
    container = bootstrap("mcp", make_settings())
    async with Client(container.build_mcp(stdio=True)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.description and tool.output_schema, tool.name
        assert "user" not in json.dumps(tool.input_schema).lower().replace("user's", ""), tool.name
    assert hints(tools["list_tasks"]).read_only_hint is True
    assert hints(tools["delete_task"]).destructive_hint is True
    assert hints(tools["complete_task"]).idempotent_hint is True
    assert tools["add_task"].input_schema["properties"]["due"]["description"]
    assert hints(tools["lists"]).read_only_hint is True
    for name in ("delete_tasks", "edit_list", "undo"):  # each may delete tasks or lists
        assert hints(tools[name]).destructive_hint is True, name
    assert hints(tools["change_tasks"]).destructive_hint is False
    assert hints(tools["change_tasks"]).idempotent_hint is True
    for name, tool in tools.items():  # every write takes an idempotency key; reads do not
        writes = not hints(tool).read_only_hint
        assert ("idempotency_key" in tool.input_schema["properties"]) == writes, name


async def test_a_full_round_of_tools_in_memory(make_settings) -> None:
    container = bootstrap("mcp", make_settings())
    async with Client(container.build_mcp(stdio=True)) as client:
        added = structured(await client.call_tool("add_task", {
            "title": "Water the plants", "due": "tomorrow 9am", "recurrence": "every 3 days",
            "priority": "medium", "tags": ["home"], "remind_before_minutes": 15,
        }))  # fmt: skip
        task_id = added["id"]
        assert added["recurrence"] == "FREQ=DAILY;INTERVAL=3" and added["remind_at"]
        updated = structured(
            await client.call_tool("update_task", {"task_id": task_id, "title": "Water plants"})
        )
        assert updated["title"] == "Water plants" and updated["version"] == 2
        reminded = structured(
            await client.call_tool("set_reminder", {"task_id": task_id, "at": "tomorrow 8am"})
        )
        assert reminded["remind_before_minutes"] is None and reminded["remind_at"].endswith("07:00:00Z")
        listed = structured(await client.call_tool("list_tasks", {}))
        assert [t["id"] for t in listed["items"]] == [task_id]
        assert listed["items"][0]["remind_at"]  # each task shows its next reminder
        done = structured(await client.call_tool("complete_task", {"task_id": task_id}))
        assert done["completed"] and done["next_occurrence_due_at"] and "next occurrence" in done["note"]
        reopened = structured(await client.call_tool("update_task", {"task_id": task_id, "completed": False}))
        assert reopened["completed"] is False
        cancelled = structured(await client.call_tool("set_reminder", {"task_id": task_id, "cancel": True}))
        assert cancelled["remind_at"] is None
        deleted = structured(await client.call_tool("delete_task", {"task_id": task_id, "confirm": True}))
        assert deleted == {"id": task_id, "title": "Water plants", "deleted": True, "change_id": ANY}
        assert structured(await client.call_tool("list_tasks", {"status": "all"}))["items"] == []


@pytest.mark.parametrize(
    ("tool", "arguments", "message"),
    [
        ("add_task", {"title": ""}, "title is empty"),
        ("add_task", {"title": "x" * 201}, "keep it to 200"),
        ("add_task", {"title": "ok", "description": "d" * 4001}, "limit is 4000"),
        ("add_task", {"title": "ok", "tags": [f"t{i}" for i in range(25)]}, "at most 20"),
        ("add_task", {"title": "ok", "due": "tomorow 5pm"}, "Could not understand 'tomorow 5pm'"),
        ("add_task", {"title": "ok", "recurrence": "now and then"}, "repeat rule"),
        ("complete_task", {"task_id": 424242}, "Task 424242 not found"),
        ("set_reminder", {"task_id": 424242, "at": "tomorrow"}, "Task 424242 not found"),
        ("list_tasks", {"cursor": "garbage"}, "cursor"),
    ],
)
async def test_bad_input_is_a_clear_tool_error_and_writes_nothing(
    make_settings, tool, arguments, message
) -> None:
    container = bootstrap("mcp", make_settings())
    async with Client(container.build_mcp(stdio=True)) as client:
        text = error_text(await client.call_tool(tool, arguments))
        assert message in text
        assert "Traceback" not in text
        assert structured(await client.call_tool("list_tasks", {"status": "all"}))["items"] == []


async def test_stdio_acts_for_the_user_in_its_environment(tmp_path: Path) -> None:
    env = {**os.environ, "TODO_DATABASE_URL": f"sqlite:///{tmp_path / 'stdio.db'}", "TODO_USER": "carol",
           "TODO_TIMEZONE": "Europe/Berlin", "TODO_LOG_LEVEL": "WARNING"}  # fmt: skip
    env.pop("TODO_JWT_SECRET", None)
    params = StdioServerParameters(command=sys.executable, args=["-m", "todo_agent.cli", "mcp"], env=env)
    async with Client(params) as client:
        assert {t.name for t in (await client.list_tools()).tools} == TOOLS
        added = structured(
            await client.call_tool("add_task", {"title": "From Claude Desktop", "due": "friday 5pm"})
        )
        assert added["due_at"].endswith("T16:00:00Z")  # 17:00 in Berlin (winter)
    container = bootstrap("mcp", _settings_for(tmp_path / "stdio.db"))
    from tasks.inputs import TaskQuery
    from tasks.service import Actor

    assert [t.title for t in container.tasks.list(Actor("carol"), TaskQuery()).items] == [
        "From Claude Desktop"
    ]
    assert container.tasks.list(Actor("local"), TaskQuery()).items == []


def _settings_for(db: Path):
    from todo_agent.settings import Settings

    return Settings(database_url=f"sqlite:///{db}")


@pytest.fixture
def http_server(make_settings, app_server_factory):
    container = bootstrap("api", make_settings(jwt_secret=JWT_SECRET))
    return app_server_factory(app_for(container))


def http_client(url: str, token: str | None) -> Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return Client(
        streamable_http_client(f"{url}/mcp", http_client=httpx2.AsyncClient(headers=headers, timeout=30))
    )


async def test_two_users_over_http_never_see_each_other(http_server, verifier: JwtVerifier) -> None:
    alice, bob = verifier.issue("alice"), verifier.issue("bob", zoneinfo="America/New_York")
    async with http_client(http_server.url, alice) as a:
        mine = structured(await a.call_tool("add_task", {"title": "Alice's secret", "due": "tomorrow 5pm"}))
        assert mine["due_at"].endswith("T16:00:00Z")  # the deployment's zone: Europe/Berlin
    async with http_client(http_server.url, bob) as b:
        assert structured(await b.call_tool("list_tasks", {"status": "all"}))["items"] == []
        assert (
            structured(await b.call_tool("list_tasks", {"search": "secret", "status": "all"}))["items"] == []
        )
        for tool, args in [
            ("complete_task", {"task_id": mine["id"]}),
            ("delete_task", {"task_id": mine["id"]}),
            ("update_task", {"task_id": mine["id"], "title": "pwned"}),
            ("set_reminder", {"task_id": mine["id"], "at": "tomorrow"}),
        ]:
            assert f"Task {mine['id']} not found" in error_text(await b.call_tool(tool, args))
        theirs = structured(await b.call_tool("add_task", {"title": "Bob's", "due": "tomorrow 5pm"}))
        assert theirs["due_at"].endswith("T22:00:00Z")  # the token's zoneinfo: New York
    async with http_client(http_server.url, alice) as a:
        items = structured(await a.call_tool("list_tasks", {"status": "all"}))["items"]
        assert [(t["title"], t["completed"]) for t in items] == [("Alice's secret", False)]


@pytest.mark.parametrize("case", ["missing", "expired", "wrong_audience", "wrong_signature", "garbage"])
async def test_bad_tokens_get_401(http_server, case: str) -> None:
    now = int(time.time())
    claims = {"sub": "alice", "aud": "todo-agent", "iat": now, "exp": now + 300}
    token = {
        "missing": None,
        "expired": jwt.encode({**claims, "exp": now - 3600}, JWT_SECRET, algorithm="HS256"),
        "wrong_audience": jwt.encode({**claims, "aud": "someone-else"}, JWT_SECRET, algorithm="HS256"),
        "wrong_signature": jwt.encode(claims, "another-secret-another-secret-another", algorithm="HS256"),
        "garbage": "not.a.jwt",
    }[case]
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(f"{http_server.url}/mcp", headers=headers, json=body)
        assert response.status_code == 401
        auth_header = {"Authorization": headers.get("Authorization", "")}
        rest = await client.get(f"{http_server.url}/api/tasks", headers=auth_header)
    assert rest.status_code == 401 and "detail" in rest.json()


async def test_a_retry_over_http_on_a_new_connection_writes_once(http_server, verifier: JwtVerifier) -> None:
    """A client that timed out reconnects and sends the call again with the same key."""
    token = verifier.issue("retrier")
    call = {"tasks": [{"title": "Book flights"}, {"title": "Book hotel"}], "idempotency_key": "trip-1"}
    results = []
    for _attempt in range(2):
        async with http_client(http_server.url, token) as client:
            results.append(structured(await client.call_tool("add_tasks", call)))
    assert results[0] == results[1]
    async with http_client(http_server.url, token) as client:
        listed = structured(await client.call_tool("list_tasks", {"status": "all"}))["items"]
    assert sorted(t["title"] for t in listed) == ["Book flights", "Book hotel"]
