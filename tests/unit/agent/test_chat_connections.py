"""The per-turn MCP connection: the caller's identity on every call, with the per-process shortcuts
(known protocol version, shared keep-alive pool, tools converted once) shared safely between turns."""

from __future__ import annotations

import asyncio
from typing import Any

import mcp
import pytest
from mcp.client.session import ClientSession
from sqlmodel import Session, select

from agent.chat import ChatFailed, turn_actor
from mcp_server.server import build_mcp_server
from tasks.inputs import TaskQuery
from tasks.models import Task
from tasks.service import Actor, TaskService
from tasks.unit_of_work import UnitOfWorkFactory
from tests.conftest import JWT_SECRET
from tests.unit.agent.support import running_app, settings_on_free_port, token


@pytest.fixture
def settings(make_settings: Any) -> Any:
    return settings_on_free_port(make_settings, jwt_secret=JWT_SECRET)


async def test_concurrent_turns_of_two_users_each_act_for_their_own_token(
    settings: Any, verifier: Any
) -> None:
    with running_app(settings) as app:  # the offline model
        async with app.client(token(verifier, "alice")) as alice, app.client(token(verifier, "bob")) as bob:
            replies = await asyncio.gather(
                *(
                    client.post("/api/chat", json={"message": f"add {name} errand {n}"})
                    for n in range(6)
                    for client, name in ((alice, "alice"), (bob, "bob"))
                )
            )
        assert [r.status_code for r in replies] == [200] * 12, [r.text for r in replies]
        for user in ("alice", "bob"):
            titles = {
                t.title.lower()
                for t in app.container.tasks.list(Actor(user, "UTC"), TaskQuery(status="all")).items
            }
            assert titles == {f"{user} errand {n}" for n in range(6)}


async def test_the_protocol_is_probed_once_then_pinned(
    settings: Any, verifier: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    probes: list[str] = []
    original = ClientSession.send_discover

    async def counted(self: ClientSession, *args: Any, **kwargs: Any) -> Any:
        probes.append("discover")
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(ClientSession, "send_discover", counted)
    with running_app(settings) as app:
        async with app.client(token(verifier, "alice")) as alice:
            for n in range(3):
                reply = await alice.post("/api/chat", json={"message": f"add pinned {n}"})
                assert reply.status_code == 200, reply.text
                assert reply.json()["tool_calls"][0]["output"]["title"] == f"Pinned {n}"
    assert probes == ["discover"]


async def test_a_turn_whose_history_cannot_load_closes_the_connection_it_opened_meanwhile(
    settings: Any, verifier: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The MCP connection opens while the history loads; a 404 (another user's conversation) or
    a failing memory read still closes it, in the turn's own task, and the turn runs no tool."""
    from agent.chat import _TaskTools

    opened: list[asyncio.Task[Any] | None] = []
    closed: list[asyncio.Task[Any] | None] = []
    connect, cleanup = _TaskTools.connect, _TaskTools.cleanup

    async def counted_connect(self: _TaskTools) -> None:
        opened.append(asyncio.current_task())
        await connect(self)

    async def counted_cleanup(self: _TaskTools) -> None:
        closed.append(asyncio.current_task())
        await cleanup(self)

    monkeypatch.setattr(_TaskTools, "connect", counted_connect)
    monkeypatch.setattr(_TaskTools, "cleanup", counted_cleanup)
    with running_app(settings) as app:
        async with app.client(token(verifier, "alice")) as alice, app.client(token(verifier, "bob")) as bob:
            first = await alice.post("/api/chat", json={"message": "add water the plants"})
            assert first.status_code == 200, first.text
            cid = first.json()["conversation_id"]
            foreign = await bob.post(
                "/api/chat", json={"message": "add feed the cat", "conversation_id": cid}
            )
            assert foreign.status_code == 404, foreign.text
            broken = app.chat.store

            async def failing_load(*args: Any, **kwargs: Any) -> Any:
                raise RuntimeError("the state store is down")

            monkeypatch.setattr(broken, "load", failing_load)
            down = await alice.post("/api/chat", json={"message": "add wash the car", "conversation_id": cid})
            assert down.status_code == 502, down.text
            assert down.json()["detail"] == "The conversation memory is unavailable: the state store is down"
            for _ in range(500):  # the turns close their connections after the caller has its answer
                if len(closed) == 3:
                    break
                await asyncio.sleep(0.01)
        assert len(opened) == 3 and len(closed) == 3, (opened, closed)
        assert [task is not None for task in opened] == [True] * 3
        assert {id(task) for task in opened} == {id(task) for task in closed}  # each in its own task
        titles = {
            t.title for t in app.container.tasks.list(Actor("bob", "UTC"), TaskQuery(status="all")).items
        }
        assert titles == set()
        titles = {
            t.title for t in app.container.tasks.list(Actor("alice", "UTC"), TaskQuery(status="all")).items
        }
        assert titles == {"Water the plants"}


async def test_a_reply_that_cannot_be_saved_is_a_502_and_the_conversation_keeps_only_complete_turns(
    settings: Any, verifier: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_app(settings) as app:
        async with app.client(token(verifier, "alice")) as alice:
            first = await alice.post("/api/chat", json={"message": "add water the plants"})
            assert first.status_code == 200, first.text
            cid = first.json()["conversation_id"]
            store = app.chat.store
            before = await store.load("alice", cid)

            async def failing_append(*args: Any, **kwargs: Any) -> None:
                raise RuntimeError("the state store refused the write")

            monkeypatch.setattr(store, "append", failing_append)
            failed = await alice.post("/api/chat", json={"message": "show my tasks", "conversation_id": cid})
            assert failed.status_code == 502, failed.text
            assert failed.json()["detail"] == (
                "The reply could not be saved to the conversation: the state store refused the write"
            )
            with pytest.raises(ChatFailed, match="refused the write"):
                await app.chat.send(Actor("alice", "UTC"), "show my tasks", conversation_id=cid)
            monkeypatch.undo()
            assert await store.load("alice", cid) == before


async def test_the_in_process_task_tools_act_for_nobody_outside_a_chat_turn(
    sqlite_service: tuple[TaskService, UnitOfWorkFactory],
) -> None:
    service, uow = sqlite_service
    async with mcp.Client(build_mcp_server(service, resolve_actor=turn_actor)) as client:
        result = await client.call_tool("add_task", {"title": "Sneak in"})
    assert result.is_error
    with Session(uow.engine) as session:
        assert session.exec(select(Task)).all() == []  # written for no user at all
