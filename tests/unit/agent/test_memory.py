"""Conversation memory: trimming for the model, transcripts, and the SQL store of the embedded default."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from agent.memory import ConversationNotFound, Item, title_from, trim_for_model
from agent.memory_sql import SqlConversationStore
from agent.transcript import messages_of, parse_output
from tasks.db import make_engine, migrate
from tests.unit.agent.support import content


def user(text: str) -> Item:
    return {"role": "user", "content": text}


def call(call_id: str) -> Item:
    return {"type": "function_call", "call_id": call_id, "name": "list_tasks", "arguments": "{}"}


def output(call_id: str, text: str = '{"items": []}') -> Item:
    return {"type": "function_call_output", "call_id": call_id, "output": text}


def reply(text: str) -> Item:
    # The model's message without its id, status and annotations: all the memory reads of it.
    return cast(
        Item, {"role": "assistant", "type": "message", "content": [{"type": "output_text", "text": text}]}
    )


@pytest.fixture
def store(sqlite_url: str) -> SqlConversationStore:
    engine = make_engine(sqlite_url)
    migrate(engine)
    return SqlConversationStore(engine)


def test_trimming_keeps_the_latest_items_and_starts_at_a_user_message() -> None:
    items = [user("a"), call("1"), output("1"), reply("A"), user("b"), call("2"), output("2"), reply("B")]
    assert trim_for_model(items, 100) == items
    assert trim_for_model(items, 4) == items[4:]
    assert trim_for_model(items, 6) == items[4:]  # never starts at an orphan tool output
    assert trim_for_model(items, None) == items
    assert trim_for_model(items, 2) == []


def test_a_title_is_the_start_of_the_first_message() -> None:
    assert title_from("  add   milk ") == "add milk"
    long = title_from("please " * 30)
    assert len(long) <= 60 and long.endswith("…")


def test_a_transcript_pairs_tool_outputs_with_their_calls() -> None:
    items = [
        user("list"),
        call("1"),
        output("1"),
        reply("Nothing due."),
        call("2"),
        output("2", "Task 9 not found"),
    ]
    assert messages_of(items) == [
        {"role": "user", "content": "list"},
        {"role": "tool", "call_id": "1", "name": "list_tasks", "arguments": {}, "content": {"items": []}},
        {"role": "assistant", "content": "Nothing due."},
        {
            "role": "tool",
            "call_id": "2",
            "name": "list_tasks",
            "arguments": {},
            "content": "Task 9 not found",
        },
    ]
    assert parse_output([{"type": "text", "text": '{"id": 1}'}]) == {"id": 1}


async def test_the_sql_store_keeps_history_beyond_the_model_limit(store: SqlConversationStore) -> None:
    info = await store.create("alice", title="t")
    for n in range(30):
        await store.append("alice", info.id, [user(f"m{n}"), reply(f"r{n}")])
    assert len(await store.load("alice", info.id)) == 60
    assert await store.load("alice", info.id, limit=4) == [
        user("m28"),
        reply("r28"),
        user("m29"),
        reply("r29"),
    ]


async def test_concurrent_appends_to_one_conversation_lose_nothing(store: SqlConversationStore) -> None:
    info = await store.create("alice", title="t")
    await asyncio.gather(
        *(store.append("alice", info.id, [user(f"m{n}"), reply(f"r{n}")]) for n in range(20))
    )
    items = await store.load("alice", info.id)
    assert sorted(content(i) for i in items if i.get("role") == "user") == sorted(f"m{n}" for n in range(20))
    for index in range(0, 40, 2):  # each turn's items stay together
        assert content(items[index + 1])[0]["text"] == "r" + content(items[index])[1:]


async def test_another_users_conversation_does_not_exist_for_them(store: SqlConversationStore) -> None:
    info = await store.create("alice", title="mine")
    for attempt in (
        store.get("bob", info.id),
        store.load("bob", info.id),
        store.append("bob", info.id, [user("x")]),
        store.rename("bob", info.id, "x"),
        store.delete("bob", info.id),
    ):
        with pytest.raises(ConversationNotFound):
            await attempt
    assert await store.recent("bob") == []
    assert [c.title for c in await store.recent("alice")] == ["mine"]
