"""The "needs the user's yes" tool errors as data: an error result that keeps its sentence and
carries the confirmation (``_meta`` and a JSON block), which a client can act on as it is; and
the idempotency key a client may send in a tool call's ``_meta``."""

from __future__ import annotations

import json
from typing import Any, cast

import mcp
import pytest
from mcp_types import CallToolResult, RequestParamsMeta, TextContent

from mcp_server.confirmations import (
    META_KEY,
    NeededConfirmation,
    confirmation_in,
    confirmation_of,
    without_confirmation,
)
from mcp_server.idempotency import META_KEY as KEY_IN_META
from mcp_server.server import build_mcp_server
from tasks.inputs import TaskDraft, TaskFilter, TaskQuery
from tasks.service import Actor, TaskService
from tasks.unit_of_work import UnitOfWorkFactory

ALICE = Actor("alice", "Europe/Berlin")


@pytest.fixture
def service(sqlite_service: tuple[TaskService, UnitOfWorkFactory]) -> TaskService:
    return sqlite_service[0]


def tools(service: TaskService) -> mcp.Client:
    """A client without elicitation (like the chat's): refusals come back as tool errors. Its
    ``call_tool`` checks structured results against the tools' output schemas."""
    return mcp.Client(build_mcp_server(service, resolve_actor=lambda token: ALICE))


def texts(result: CallToolResult) -> list[str]:
    assert all(isinstance(block, TextContent) for block in result.content), result.content
    return [block.text for block in result.content if isinstance(block, TextContent)]


def keyed(key: Any) -> RequestParamsMeta:
    """A tool call's ``_meta`` with ``key`` as its idempotency key."""
    return cast(RequestParamsMeta, {KEY_IN_META: key})


def titles(service: TaskService) -> list[str]:
    return [t.title for t in service.list(ALICE, TaskQuery(status="all", limit=200)).items]


async def test_a_refused_delete_is_an_error_with_its_sentence_first_and_the_confirmation_as_data(
    service: TaskService,
) -> None:
    async with tools(service) as client:
        milk = service.add(ALICE, TaskDraft(title="Buy milk"))
        refused = await client.call_tool("delete_task", {"task_id": milk.id, "idempotency_key": "k-1"})
        assert refused.is_error is True
        sentence, block = texts(refused)
        assert sentence.startswith(f"Error executing tool delete_task: Deleting task {milk.id} 'Buy milk'")
        assert "confirm: true" in sentence and "Nothing was deleted." in sentence
        data = {
            "tool": "delete_task",
            "arguments": {"task_id": milk.id, "confirm": True},
            "question": f"Delete task #{milk.id} 'Buy milk' and its subtasks?",
            "count": 1,
            "title": "Buy milk",
        }
        assert refused.meta is not None and refused.meta[META_KEY] == data
        assert json.loads(block) == {META_KEY: data}
        # Not as structuredContent: the tool's output schema (DeletedTask) is about a success, and
        # some clients check structuredContent against it even on an error result.
        assert refused.structured_content is None
        assert titles(service) == ["Buy milk"]

        needed = confirmation_of(refused)
        assert needed == confirmation_in([{"type": "input_text", "text": t} for t in texts(refused)])
        assert needed is not None
        done = await client.call_tool(needed.tool, needed.arguments)
        assert done.is_error is False and done.structured_content is not None
        assert done.structured_content["deleted"] is True and titles(service) == []


async def test_a_batch_by_filter_over_the_threshold_carries_the_call_to_repeat(service: TaskService) -> None:
    async with tools(service) as client:
        for n in range(22):
            service.add(ALICE, TaskDraft(title=f"Chore {n}", tags=["chores"]))
        refused = await client.call_tool(
            "change_tasks", {"action": "complete", "filter": {"tag": "chores"}, "idempotency_key": "k-2"}
        )
        assert refused.is_error is True and texts(refused)[0].startswith(
            "Error executing tool change_tasks: needs_confirmation: This would complete 22 tasks"
        )
        needed = confirmation_of(refused)
        assert needed == NeededConfirmation(
            "change_tasks",
            {"action": "complete", "filter": {"tag": "chores"}, "include_subtasks": False, "confirm": True},
            "Complete 22 tasks matching the filter?",
            count=22,
        )
        assert service.count_matching(ALICE, TaskFilter(status="pending")) == 22
        done = await client.call_tool(needed.tool, needed.arguments)
        assert done.is_error is False and done.structured_content is not None
        assert len(done.structured_content["changed"]) == 22

        for n in range(21):
            service.add(ALICE, TaskDraft(title=f"Old {n}", tags=["old"]))
        gone = confirmation_of(await client.call_tool("delete_tasks", {"filter": {"tag": "old"}}))
        assert gone is not None and (gone.question, gone.count) == (
            "Delete 21 tasks (with their subtasks)?",
            21,
        )
        assert gone.arguments == {"filter": {"tag": "old"}, "confirm": True}


async def test_deleting_a_list_with_its_tasks_carries_the_list_and_its_count(service: TaskService) -> None:
    async with tools(service) as client:
        service.create_list(ALICE, "Errands")
        for n in range(3):
            service.add(ALICE, TaskDraft(title=f"Errand {n}", list="Errands"))
        refused = await client.call_tool(
            "edit_list", {"action": "delete", "list": "Errands", "tasks": "delete"}
        )
        needed = confirmation_of(refused)
        assert needed == NeededConfirmation(
            "edit_list",
            {"action": "delete", "list": "Errands", "tasks": "delete", "confirm": True},
            "Delete the list 'Errands' and its 3 tasks?",
            count=3,
            title="Errands",
        )
        assert len(titles(service)) == 3


async def test_other_tool_errors_carry_no_confirmation(service: TaskService) -> None:
    async with tools(service) as client:
        missing = await client.call_tool("delete_task", {"task_id": 999})
        assert missing.is_error is True and texts(missing) == [
            "Error executing tool delete_task: Task 999 not found."
        ]
        assert confirmation_of(missing) is None and confirmation_in(missing.content) is None


def test_only_a_whole_block_of_ours_is_read_as_a_confirmation() -> None:
    needed = NeededConfirmation("delete_task", {"task_id": 1, "confirm": True}, "Delete task #1 'x'?", 1, "x")
    block = json.dumps({META_KEY: needed.data()})
    assert (
        confirmation_in([{"type": "input_text", "text": "No."}, {"type": "input_text", "text": block}])
        == needed
    )
    quoted = f"Could not find a task titled {block}"  # a sentence that quotes one is not one
    assert confirmation_in([{"type": "input_text", "text": quoted}]) is None
    extra = json.dumps({META_KEY: needed.data(), "more": 1})
    assert confirmation_in([{"type": "input_text", "text": extra}]) is None
    unconfirmed = json.dumps({META_KEY: {**needed.data(), "arguments": {"task_id": 1}}})
    assert confirmation_in([{"type": "input_text", "text": unconfirmed}]) is None
    other_tool = json.dumps({META_KEY: {**needed.data(), "tool": "add_task"}})
    assert confirmation_in([{"type": "input_text", "text": other_tool}]) is None
    parts = [{"type": "input_text", "text": "No."}, {"type": "input_text", "text": block}]
    assert without_confirmation(parts) == [{"type": "input_text", "text": "No."}]


async def test_an_idempotency_key_in_the_calls_meta_writes_once(service: TaskService) -> None:
    async with tools(service) as client:
        meta = keyed("chat-call-1")
        first = await client.call_tool("add_task", {"title": "Buy milk"}, meta=meta)
        again = await client.call_tool("add_task", {"title": "Buy milk"}, meta=meta)
        assert first.structured_content is not None and again.structured_content is not None
        assert again.structured_content["id"] == first.structured_content["id"]
        assert titles(service) == ["Buy milk"]

        other = await client.call_tool("add_task", {"title": "Buy milk"}, meta=keyed("chat-call-2"))
        assert (
            other.structured_content is not None
            and other.structured_content["id"] != first.structured_content["id"]
        )
        # The argument is what the call itself says: it wins over the _meta key.
        argued = await client.call_tool(
            "add_task", {"title": "Buy milk", "idempotency_key": "arg-1"}, meta=meta
        )
        assert (
            argued.structured_content is not None
            and argued.structured_content["id"] != first.structured_content["id"]
        )
        assert titles(service) == ["Buy milk"] * 3

        done = await client.call_tool("complete_task", {"task_id": first.structured_content["id"]}, meta=meta)
        assert (
            done.is_error is True and "already used for a different request" in texts(done)[0]
        )  # a key names one request


async def test_a_meta_key_that_is_not_a_string_changes_nothing(service: TaskService) -> None:
    async with tools(service) as client:
        refused = await client.call_tool("add_task", {"title": "Buy milk"}, meta=keyed(42))
        assert refused.is_error is True and KEY_IN_META in texts(refused)[0]
        spaced = await client.call_tool("add_task", {"title": "Buy milk"}, meta=keyed("has space"))
        assert spaced.is_error is True and "idempotency key" in texts(spaced)[0]
        assert titles(service) == []
