"""Lists, subtasks, history, batch tools, undo and retries through the MCP protocol (in memory),
on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from mcp import Client

from mcp_server.server import build_mcp_server
from tasks.service import Actor
from tests.integration.mcp.support import resource_text
from todo_agent.bootstrap import Container, bootstrap
from todo_agent.settings import Settings

pytestmark = pytest.mark.integration


def structured(result: Any) -> Any:
    assert not result.is_error, result.content
    return result.structured_content


def error_text(result: Any) -> str:
    assert result.is_error, result.structured_content
    return " ".join(c.text for c in result.content)


@pytest.fixture(params=["sqlite", "postgres"])
def container(request: pytest.FixtureRequest, make_settings: Callable[..., Settings]) -> Container:
    overrides = {} if request.param == "sqlite" else {"database_url": request.getfixturevalue("pg_url")}
    made = bootstrap("mcp", make_settings(**overrides))
    request.addfinalizer(made.engine.dispose)
    return made


@pytest.fixture
def server(container: Container) -> Any:
    """The tools acting for a user of the test's own (the PostgreSQL database is shared)."""
    actor = Actor(f"mcp-{uuid.uuid4().hex[:8]}", "Europe/Berlin")
    return build_mcp_server(container.tasks, resolve_actor=lambda _token: actor)


async def titles(client: Client, **arguments: Any) -> list[str]:
    page = structured(await client.call_tool("list_tasks", arguments))
    return [t["title"] for t in page["items"]]


async def test_lists_subtasks_and_completed_history_through_the_tools(server: Any) -> None:
    async with Client(server) as client:
        made = structured(await client.call_tool("edit_list", {"action": "create", "name": "Trip"}))
        assert made["list"]["name"] == "Trip"
        trip = structured(await client.call_tool("add_task", {"title": "Trip to Rome", "list": "trip"}))
        passport = structured(
            await client.call_tool("add_task", {"title": "Pack passport", "parent_id": trip["id"]})
        )
        assert (passport["parent_id"], passport["list_id"]) == (trip["id"], made["list"]["id"])
        await client.call_tool("add_task", {"title": "Milk"})
        assert await titles(client, list="Trip") == ["Trip to Rome", "Pack passport"]
        assert await titles(client, parent_id=trip["id"]) == ["Pack passport"]
        refused = error_text(await client.call_tool("complete_task", {"task_id": trip["id"]}))
        assert "1 open subtasks" in refused and "include_subtasks=true" in refused
        done = structured(
            await client.call_tool("complete_task", {"task_id": trip["id"], "include_subtasks": True})
        )
        assert done["completed"] and done["completed_at"]
        history = await titles(
            client, status="completed", completed_after="today", completed_before="tomorrow"
        )
        assert sorted(history) == ["Pack passport", "Trip to Rome"]
        shown = structured(await client.call_tool("lists", {}))
        assert [(v["name"], v["open_tasks"]) for v in shown["items"]] == [("Inbox", 1), ("Trip", 0)]
        gone = structured(
            await client.call_tool(
                "edit_list", {"action": "delete", "list": "Trip", "tasks": "delete", "confirm": True}
            )
        )
        assert gone["deleted"]["tasks_deleted"] == 2


async def test_an_archived_lists_tasks_are_left_out_of_today_and_the_prompts_until_asked_for(
    server: Any,
) -> None:
    async with Client(server) as client:
        garden = structured(await client.call_tool("edit_list", {"action": "create", "name": "Garden"}))
        await client.call_tool("add_task", {"title": "Weed beds", "list": "Garden", "due": "today 23:00"})
        await client.call_tool("add_task", {"title": "Buy milk", "due": "today 23:00"})
        await client.call_tool("edit_list", {"action": "archive", "list": "Garden"})
        today = json.loads(resource_text(await client.read_resource("todo://today")))
        assert [t["title"] for t in today["items"]] == ["Buy milk"]
        plan = await client.get_prompt("plan_my_day", {})
        assert "Weed beds" not in str(plan.messages) and "Buy milk" in str(plan.messages)
        assert await titles(client) == ["Buy milk"]
        assert await titles(client, list="Garden") == ["Weed beds"]
        assert sorted(await titles(client, include_archived=True)) == ["Buy milk", "Weed beds"]
        shown = json.loads(resource_text(await client.read_resource(f"todo://lists/{garden['list']['id']}")))
        assert [t["title"] for t in shown["items"]] == ["Weed beds"]
        await client.call_tool("edit_list", {"action": "unarchive", "list": "Garden"})
        today = json.loads(resource_text(await client.read_resource("todo://today")))
        assert sorted(t["title"] for t in today["items"]) == ["Buy milk", "Weed beds"]


async def test_a_large_batch_by_filter_asks_for_confirmation_with_its_count_then_undo_reverts_it(
    server: Any,
) -> None:
    async with Client(server) as client:
        added = structured(await client.call_tool("add_tasks", {"tasks": [
            {"title": f"Chore {i}", "tags": ["home"]} for i in range(25)
        ]}))  # fmt: skip
        assert len(added["changed"]) == 25
        asked = error_text(
            await client.call_tool("change_tasks", {"action": "complete", "filter": {"tag": "home"}})
        )
        assert "needs_confirmation:" in asked and "complete 25 tasks" in asked and "confirm=true" in asked
        assert len(await titles(client)) == 25
        done = structured(await client.call_tool(
            "change_tasks", {"action": "complete", "filter": {"tag": "home"}, "confirm": True}
        ))  # fmt: skip
        assert len(done["changed"]) == 25 and await titles(client) == []
        undone = structured(await client.call_tool("undo", {}))
        assert undone["undone_change_id"] == done["change_id"] and len(undone["changed"]) == 25
        assert len(await titles(client)) == 25
        again = error_text(await client.call_tool("undo", {"change_id": done["change_id"]}))
        assert f"already undone by change {undone['change_id']}" in again


async def test_each_single_task_write_gives_the_change_id_that_undo_reverts_exactly(server: Any) -> None:
    async with Client(server) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        for name in ("add_task", "update_task", "complete_task", "delete_task", "set_reminder"):
            schema = tools[name].output_schema or {}
            assert "change_id" in schema.get("properties", {}), (name, schema)
        rent = structured(await client.call_tool("add_task", {"title": "Pay rent"}))
        gym = structured(await client.call_tool("add_task", {"title": "Gym"}))
        assert isinstance(rent["change_id"], int) and gym["change_id"] > rent["change_id"]
        renamed = structured(
            await client.call_tool("update_task", {"task_id": rent["id"], "title": "Pay the rent"})
        )
        done = structured(await client.call_tool("complete_task", {"task_id": gym["id"]}))
        assert done["completed"] and done["change_id"] > renamed["change_id"] > gym["change_id"]
        # Undo the rename, an older change than the last one: only it is reverted.
        undone = structured(await client.call_tool("undo", {"change_id": renamed["change_id"]}))
        assert undone["undone_change_id"] == renamed["change_id"]
        assert sorted(await titles(client, status="all")) == ["Gym", "Pay rent"]
        assert await titles(client) == ["Pay rent"]  # the gym stays completed
        gone = structured(await client.call_tool("delete_task", {"task_id": rent["id"], "confirm": True}))
        assert gone["deleted"] and isinstance(gone["change_id"], int)
        structured(await client.call_tool("undo", {"change_id": gone["change_id"]}))
        assert await titles(client) == ["Pay rent"]
        structured(await client.call_tool("undo", {"change_id": done["change_id"]}))
        assert sorted(await titles(client)) == ["Gym", "Pay rent"]


async def test_the_confirmation_hook_is_asked_and_a_yes_goes_ahead(container: Container) -> None:
    actor = Actor(f"hook-{uuid.uuid4().hex[:8]}")
    asked: list[int] = []

    async def yes(_ctx: Any, exc: Any) -> bool:
        asked.append(exc.count)
        return True

    server = build_mcp_server(container.tasks, resolve_actor=lambda _token: actor, confirm_batch=yes)
    async with Client(server) as client:
        await client.call_tool("add_tasks", {"tasks": [{"title": f"T{i}"} for i in range(21)]})
        deleted = structured(await client.call_tool("delete_tasks", {"filter": {"status": "all"}}))
    assert asked == [21] and len(deleted["deleted"]) == 21


async def test_a_retried_call_with_the_same_key_writes_once(server: Any) -> None:
    async with Client(server) as client:
        first = structured(
            await client.call_tool("add_task", {"title": "Pay rent", "idempotency_key": "k-1"})
        )
        second = structured(
            await client.call_tool("add_task", {"title": "Pay rent", "idempotency_key": "k-1"})
        )
        assert first == second and await titles(client) == ["Pay rent"]
        other = error_text(await client.call_tool("add_task", {"title": "Pay gas", "idempotency_key": "k-1"}))
        assert "already used for a different request" in other
        batch = {"tasks": [{"title": "A"}, {"title": "B"}], "idempotency_key": "k-2"}
        assert structured(await client.call_tool("add_tasks", batch)) == structured(
            await client.call_tool("add_tasks", batch)
        )
        done = {"task_id": first["id"], "idempotency_key": "k-3"}
        assert structured(await client.call_tool("complete_task", done))["completed"]
        assert structured(await client.call_tool("complete_task", done))["version"] == 2
        assert sorted(await titles(client, status="all")) == ["A", "B", "Pay rent"]


@pytest.mark.parametrize(
    ("tool", "arguments", "message"),
    [
        ("add_task", {"title": "Milk", "list": "groceries"}, "There is no list 'groceries'"),
        ("add_tasks", {"tasks": [{"title": f"T{i}"} for i in range(51)]}, "one call adds at most 50"),
        ("add_tasks", {"tasks": [{"title": "ok"}, {"title": ""}]}, "Task 2 (''): The title is empty"),
        ("change_tasks", {"action": "move", "task_ids": [1], "list": "nowhere"}, "no list 'nowhere'"),
        ("change_tasks", {"action": "complete"}, "Give either task_ids"),
        ("undo", {}, "Nothing to undo"),
        ("edit_list", {"action": "delete", "list": "Inbox"}, "Inbox cannot be deleted"),
        ("add_task", {"title": "x", "idempotency_key": "has space"}, "printable ASCII"),
    ],
)
async def test_bad_input_is_a_specific_tool_error_and_writes_nothing(
    server: Any, tool, arguments, message
) -> None:
    async with Client(server) as client:
        text = error_text(await client.call_tool(tool, arguments))
        assert message in text and "Traceback" not in text
        assert await titles(client, status="all") == []


async def test_a_cycle_of_parents_is_a_tool_error(server: Any) -> None:
    async with Client(server) as client:
        a = structured(await client.call_tool("add_task", {"title": "A"}))
        b = structured(await client.call_tool("add_task", {"title": "B", "parent_id": a["id"]}))
        text = error_text(await client.call_tool("update_task", {"task_id": a["id"], "parent_id": b["id"]}))
        assert "would be a cycle" in text
        top = structured(await client.call_tool("update_task", {"task_id": b["id"], "top_level": True}))
        assert top["parent_id"] is None
