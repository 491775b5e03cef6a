"""Confirmations in the chat: a tool call that needs the user's yes comes back as a structured
``confirm`` item (whatever the model says), and answering it runs the call at most once, for its
own user and conversation only. On the offline model and on a scripted real model."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest.mock import ANY

import pytest
from agents.testing import ScriptedModel, assistant_message, function_call
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from sqlmodel import Session, col, select

from agent.confirmations import pending_in
from mcp_server.confirmations import META_KEY, NeededConfirmation
from tasks.errors import TaskNotFound
from tasks.inputs import TaskDraft, TaskFilter, TaskQuery
from tasks.models import OutboxEvent
from tasks.service import Actor
from tests.conftest import JWT_SECRET
from tests.unit.agent.openai_wire_support import MODEL_NAME, RequestLog, app_on_model_server
from tests.unit.agent.support import (
    RunningApp,
    fail_next_append,
    running_app,
    settings_on_free_port,
    stream,
    token,
)

ALICE = Actor("alice", "Europe/Berlin")
DELETE_ERRANDS = {"action": "delete", "list": "Errands", "tasks": "delete"}
BOB = Actor("bob", "America/New_York")


def deletes(app: RunningApp, user_id: str) -> list[int | None]:
    """The task ids of the user's ``deleted`` events in the outbox, oldest first."""
    with Session(app.container.uow.engine) as session:
        statement = (
            select(OutboxEvent)
            .where(OutboxEvent.user_id == user_id, OutboxEvent.topic == "task-events")
            .order_by(col(OutboxEvent.id))
        )
        return [row.task_id for row in session.exec(statement) if row.event_type == "todo.task.deleted.v1"]


def titles(app: RunningApp, actor: Actor) -> list[str]:
    return [t.title for t in app.container.tasks.list(actor, TaskQuery(status="all", limit=200)).items]


def answer_path(cid: str, confirmation_id: str) -> str:
    return f"/api/conversations/{cid}/confirmations/{confirmation_id}"


# -- the offline model -------------------------------------------------------------------------


async def test_offline_delete_asks_with_a_confirm_item_cancel_keeps_and_confirm_deletes_once(
    make_settings: Any,
) -> None:
    settings = settings_on_free_port(make_settings)
    with running_app(settings) as app:
        local = Actor(settings.user, "Europe/Berlin")
        milk = app.container.tasks.add(local, TaskDraft(title="Buy milk"))
        async with app.client() as client:
            events = await stream(client, "delete buy milk")
            names = [name for name, _ in events]
            assert names[-2:] == ["confirm", "done"], names
            confirm, done = events[-2][1], events[-1][1]
            cid = done["conversation_id"]
            assert confirm == {
                "type": "confirm",
                "id": confirm["id"],
                "question": f"Delete task #{milk.id} 'Buy milk' and its subtasks?",
                "action": "delete_task",
                "count": 1,
            }
            assert done["confirmations"] == [confirm]
            assert "yes" in done["reply"].lower()  # typing yes stays possible
            assert titles(app, local) == ["Buy milk"]
            shown = (await client.get(f"/api/conversations/{cid}")).json()
            assert shown["confirmations"] == [confirm]  # a reloaded page shows the buttons again

            cancelled = await client.post(answer_path(cid, confirm["id"]), json={"confirm": False})
            assert cancelled.status_code == 200, cancelled.text
            assert cancelled.json()["confirmed"] is False and cancelled.json()["tool_call"] is None
            assert titles(app, local) == ["Buy milk"] and deletes(app, settings.user) == []
            again = await client.post(answer_path(cid, confirm["id"]), json={"confirm": True})
            assert again.status_code == 409 and "no longer pending" in again.json()["detail"]
            assert titles(app, local) == ["Buy milk"]

            asked = await client.post(
                "/api/chat", json={"message": "delete buy milk", "conversation_id": cid}
            )
            [second] = asked.json()["confirmations"]
            assert second["id"] != confirm["id"]
            clicks = await asyncio.gather(
                *(client.post(answer_path(cid, second["id"]), json={"confirm": True}) for _ in range(3))
            )
            statuses = sorted(r.status_code for r in clicks)
            assert statuses == [200, 409, 409], [r.text for r in clicks]
            [done_click] = [r.json() for r in clicks if r.status_code == 200]
            assert done_click["confirmed"] is True and done_click["tool_call"]["is_error"] is False
            assert done_click["reply"] == f"Deleted task #{milk.id} 'Buy milk'."
            assert titles(app, local) == [] and deletes(app, settings.user) == [milk.id]

            transcript = (await client.get(f"/api/conversations/{cid}")).json()
            assert transcript["confirmations"] == []
            assert transcript["messages"][-1] == {"role": "assistant", "content": done_click["reply"]}
            later = await client.post("/api/chat", json={"message": "yes", "conversation_id": cid})
            assert "nothing waiting" in later.json()["reply"]  # the model knows it was answered
            assert deletes(app, settings.user) == [milk.id]


async def test_offline_typing_yes_still_deletes_and_leaves_the_button_stale(make_settings: Any) -> None:
    settings = settings_on_free_port(make_settings)
    with running_app(settings) as app:
        local = Actor(settings.user, "Europe/Berlin")
        milk = app.container.tasks.add(local, TaskDraft(title="Buy milk"))
        async with app.client() as client:
            asked = (await client.post("/api/chat", json={"message": f"delete {milk.id}"})).json()
            cid, [confirm] = asked["conversation_id"], asked["confirmations"]
            yes = (await client.post("/api/chat", json={"message": "yes", "conversation_id": cid})).json()
            assert yes["reply"].startswith("Deleted") and yes["confirmations"] == []
            stale = await client.post(answer_path(cid, confirm["id"]), json={"confirm": True})
            assert stale.status_code == 409
            assert deletes(app, settings.user) == [milk.id]


async def test_offline_a_batch_over_the_threshold_is_confirmed_with_its_count(make_settings: Any) -> None:
    settings = settings_on_free_port(make_settings)
    with running_app(settings) as app:
        local = Actor(settings.user, "Europe/Berlin")
        for n in range(23):
            app.container.tasks.add(local, TaskDraft(title=f"Chore {n}", tags=["chores"]))
        async with app.client() as client:
            asked = (
                await client.post("/api/chat", json={"message": "complete all tasks tagged chores"})
            ).json()
            [confirm] = asked["confirmations"]
            assert (confirm["action"], confirm["count"]) == ("change_tasks", 23)
            assert confirm["question"] == "Complete 23 tasks matching the filter?"
            done = await client.post(
                answer_path(asked["conversation_id"], confirm["id"]), json={"confirm": True}
            )
            assert done.status_code == 200, done.text
            assert done.json()["reply"].startswith("Completed 23 tasks.")
        left = app.container.tasks.list(local, TaskQuery(status="pending", limit=200)).items
        assert left == []


async def test_unknown_confirmation_ids_and_conversations_answer_404(make_settings: Any) -> None:
    settings = settings_on_free_port(make_settings)
    with running_app(settings) as app:
        async with app.client() as client:
            cid = (await client.post("/api/chat", json={"message": "show my tasks"})).json()[
                "conversation_id"
            ]
            unknown = await client.post(answer_path(cid, "call_nope"), json={"confirm": True})
            assert unknown.status_code == 404 and "not found" in unknown.json()["detail"]
            [listing] = [
                m
                for m in (await client.get(f"/api/conversations/{cid}")).json()["messages"]
                if m["role"] == "tool"
            ]
            not_a_question = await client.post(answer_path(cid, listing["call_id"]), json={"confirm": True})
            assert not_a_question.status_code == 404
            missing = await client.post(answer_path("f" * 32, "call_nope"), json={"confirm": True})
            assert missing.status_code == 404


# -- a scripted real model, with sign-in -------------------------------------------------------


@pytest.fixture
def settings(make_settings: Any) -> Any:
    return settings_on_free_port(make_settings, jwt_secret=JWT_SECRET)


async def test_the_confirm_item_comes_from_the_tool_not_the_models_words(
    settings: Any, verifier: Any
) -> None:
    model = ScriptedModel()
    with running_app(settings, model=model) as app:
        milk = app.container.tasks.add(ALICE, TaskDraft(title="Buy milk"))
        model.extend(
            [
                [function_call("delete_task", {"task_id": milk.id}, call_id="del1")],
                [assistant_message("Hmm, I'll leave that to you.")],  # says nothing of a question
            ]
        )
        async with app.client(token(verifier, "alice")) as alice, app.client(token(verifier, "bob")) as bob:
            events = await stream(alice, "delete buy milk")
            confirm, done = dict(events)["confirm"], events[-1][1]
            cid = done["conversation_id"]
            assert confirm["id"] == "del1" and confirm["action"] == "delete_task"
            assert confirm["question"] == f"Delete task #{milk.id} 'Buy milk' and its subtasks?"
            assert titles(app, ALICE) == ["Buy milk"]

            # Another user can neither answer it in Alice's conversation nor name it from theirs.
            stolen = await bob.post(answer_path(cid, "del1"), json={"confirm": True})
            assert stolen.status_code == 404 and "del1" not in stolen.text
            model.extend([[assistant_message("Hi Bob.")]])
            bobs = (await bob.post("/api/chat", json={"message": "hi"})).json()["conversation_id"]
            assert (await bob.post(answer_path(bobs, "del1"), json={"confirm": True})).status_code == 404
            assert titles(app, ALICE) == ["Buy milk"] and deletes(app, "alice") == []

            answered = await alice.post(answer_path(cid, "del1"), json={"confirm": True})
            assert answered.status_code == 200, answered.text
            call = answered.json()["tool_call"]
            assert call["name"] == "delete_task" and call["arguments"]["confirm"] is True
            assert call["output"] == {"id": milk.id, "title": "Buy milk", "deleted": True, "change_id": ANY}
            assert deletes(app, "alice") == [milk.id]
            with pytest.raises(TaskNotFound):
                app.container.tasks.get(ALICE, milk.id)

            # The model's next turn sees the answer, the confirmed call and its outcome.
            model.extend([[assistant_message("Done.")]])
            await alice.post("/api/chat", json={"message": "thanks", "conversation_id": cid})
            seen = model.calls[-1].input
            assert isinstance(seen, list)
            outputs = [i for i in seen if isinstance(i, dict) and i.get("type") == "function_call_output"]
            assert '"deleted":true' in outputs[-1]["output"].replace(" ", "")
            texts = [str(i.get("content")) for i in seen if isinstance(i, dict) and i.get("role") == "user"]
            assert f"Confirm: Delete task #{milk.id} 'Buy milk' and its subtasks?" in texts


async def test_a_batch_delete_by_filter_and_a_list_delete_ask_with_their_counts(
    settings: Any, verifier: Any
) -> None:
    model = ScriptedModel()
    with running_app(settings, model=model) as app:
        service = app.container.tasks
        service.create_list(ALICE, "Errands")
        for n in range(22):
            service.add(ALICE, TaskDraft(title=f"Old {n}", tags=["old"]))
        for n in range(3):
            service.add(ALICE, TaskDraft(title=f"Errand {n}", list="Errands"))
        model.extend(
            [
                [
                    function_call("delete_tasks", {"filter": {"tag": "old"}}, call_id="b1"),
                    function_call("edit_list", DELETE_ERRANDS, call_id="l1"),
                ],
                [assistant_message("Both need your yes.")],
            ]
        )  # fmt: skip
        async with app.client(token(verifier, "alice")) as alice:
            reply = (await alice.post("/api/chat", json={"message": "clean up"})).json()
            cid = reply["conversation_id"]
            by_id = {c["id"]: c for c in reply["confirmations"]}
            assert by_id["b1"]["question"] == "Delete 22 tasks (with their subtasks)?"
            assert (by_id["b1"]["action"], by_id["b1"]["count"]) == ("delete_tasks", 22)
            assert by_id["l1"]["question"] == "Delete the list 'Errands' and its 3 tasks?"
            assert (by_id["l1"]["action"], by_id["l1"]["count"]) == ("edit_list", 3)
            assert len(titles(app, ALICE)) == 25

            kept = await alice.post(answer_path(cid, "l1"), json={"confirm": False})
            assert kept.status_code == 200 and "Errands" in [i.name for i in service.lists(ALICE).items]
            # Answering one closes the turn's other question too: the conversation moved on.
            assert (await alice.post(answer_path(cid, "b1"), json={"confirm": True})).status_code == 409
            assert len(titles(app, ALICE)) == 25 and deletes(app, "alice") == []
        assert service.count_matching(ALICE, TaskFilter(status="all", list="Errands")) == 3


async def test_a_call_the_model_confirmed_itself_in_the_turn_leaves_nothing_pending(
    settings: Any, verifier: Any
) -> None:
    model = ScriptedModel()
    with running_app(settings, model=model) as app:
        milk = app.container.tasks.add(ALICE, TaskDraft(title="Buy milk"))
        model.extend(
            [
                [function_call("delete_task", {"task_id": milk.id}, call_id="x1")],
                [function_call("delete_task", {"task_id": milk.id, "confirm": True}, call_id="x2")],
                [assistant_message("Deleted.")],
            ]
        )
        async with app.client(token(verifier, "alice")) as alice:
            reply = (await alice.post("/api/chat", json={"message": "delete buy milk, I'm sure"})).json()
        assert reply["confirmations"] == [] and deletes(app, "alice") == [milk.id]


async def test_a_retry_after_a_lost_answer_reuses_the_first_result_and_writes_nothing_new(
    settings: Any, verifier: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The conversation could not record the first Confirm (so it still looks pending); the
    retry reaches the same idempotency key: the task service answers with the first result and
    a task tagged since then is not deleted by the second press."""
    model = ScriptedModel()
    with running_app(settings, model=model) as app:
        service = app.container.tasks
        for n in range(21):
            service.add(ALICE, TaskDraft(title=f"Old {n}", tags=["old"]))
        model.extend(
            [
                [function_call("delete_tasks", {"filter": {"tag": "old"}}, call_id="r1")],
                [assistant_message("That is 21 tasks; sure?")],
            ]
        )
        async with app.client(token(verifier, "alice")) as alice:
            cid = (await alice.post("/api/chat", json={"message": "delete the old ones"})).json()[
                "conversation_id"
            ]
            fail_next_append(app.chat.store, monkeypatch)
            lost = await alice.post(answer_path(cid, "r1"), json={"confirm": True})
            assert lost.status_code == 502 and "memory is unavailable" in lost.json()["detail"]
            assert len(deletes(app, "alice")) == 21
            newcomer = service.add(ALICE, TaskDraft(title="New and old", tags=["old"]))
            retried = await alice.post(answer_path(cid, "r1"), json={"confirm": True})
            assert retried.status_code == 200, retried.text
            assert len(retried.json()["tool_call"]["output"]["deleted"]) == 21
            assert service.get(ALICE, newcomer.id).title == "New and old"
            assert len(deletes(app, "alice")) == 21
            assert (await alice.post(answer_path(cid, "r1"), json={"confirm": True})).status_code == 409


async def test_a_question_left_open_too_long_expires_and_changes_nothing(make_settings: Any) -> None:
    settings = settings_on_free_port(make_settings)
    with running_app(settings) as app:
        local = Actor(settings.user, "Europe/Berlin")
        milk = app.container.tasks.add(local, TaskDraft(title="Buy milk"))
        async with app.client() as client:
            asked = (await client.post("/api/chat", json={"message": f"delete {milk.id}"})).json()
            cid, [confirm] = asked["conversation_id"], asked["confirmations"]
            asked_at = datetime.now(UTC)
            app.chat.clock = lambda: asked_at + timedelta(minutes=31)
            late = await client.post(answer_path(cid, confirm["id"]), json={"confirm": True})
            assert late.status_code == 409 and "expired" in late.json()["detail"]
            assert (await client.get(f"/api/conversations/{cid}")).json()["confirmations"] == []
            app.chat.clock = lambda: asked_at + timedelta(minutes=29)
            assert (await client.get(f"/api/conversations/{cid}")).json()["confirmations"] == [confirm]
        assert titles(app, local) == ["Buy milk"] and deletes(app, settings.user) == []


def _chunk(delta: dict[str, Any], finish: str | None = None) -> str:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    body = {"id": "chatcmpl-c", "object": "chat.completion.chunk", "created": 1764000000, "model": MODEL_NAME}
    return f"data: {json.dumps({**body, 'choices': [choice]})}\n\n"


def _completions_server(script: list[list[str]]) -> tuple[FastAPI, RequestLog]:
    """``POST /v1/chat/completions`` streaming the script's next list of chunks per request."""
    app, received = FastAPI(), RequestLog()

    @app.post("/v1/chat/completions")
    async def completions(request: Request) -> Any:
        await received.record(request)
        chunks = script[len(received) - 1]
        return StreamingResponse(iter([*chunks, "data: [DONE]\n\n"]), media_type="text/event-stream")

    return app, received


def _says(text: str) -> list[str]:
    return [_chunk({"role": "assistant", "content": text}), _chunk({}, "stop")]


def _calls(name: str, arguments: dict[str, Any], call_id: str) -> list[str]:
    call = {
        "index": 0,
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }
    return [_chunk({"role": "assistant", "content": None, "tool_calls": [call]}), _chunk({}, "tool_calls")]


async def test_on_the_chat_completions_wire_the_answer_reaches_the_models_next_turn(
    make_settings: Any, verifier: Any
) -> None:
    """A real OpenAI-compatible endpoint: the question comes from the tool result, and after the
    button the next request carries the confirmed call, its result and the outcome."""
    script: list[list[str]] = []  # filled once the task's id is known; read per request
    wire, received = _completions_server(script)
    with app_on_model_server(make_settings, wire) as app:
        milk = app.container.tasks.add(ALICE, TaskDraft(title="Buy milk"))
        script += [
            _calls("delete_task", {"task_id": milk.id}, "call_w1"),
            _says("Really?"),
            _says("Welcome."),
        ]
        async with app.client(token(verifier, "alice")) as alice:
            asked = (await alice.post("/api/chat", json={"message": "delete buy milk"})).json()
            [confirm] = asked["confirmations"]
            assert confirm["question"] == f"Delete task #{milk.id} 'Buy milk' and its subtasks?"
            cid = asked["conversation_id"]
            done = await alice.post(answer_path(cid, confirm["id"]), json={"confirm": True})
            assert done.status_code == 200, done.text
            thanked = await alice.post("/api/chat", json={"message": "thanks", "conversation_id": cid})
            assert thanked.status_code == 200, thanked.text
        assert deletes(app, "alice") == [milk.id]
    messages = received.bodies[-1]["messages"]
    said = [m for m in messages if m["role"] == "user"]
    assert said[-2]["content"] == f"Confirm: Delete task #{milk.id} 'Buy milk' and its subtasks?"
    [confirmed] = [
        c
        for m in messages
        if m["role"] == "assistant"
        for c in m.get("tool_calls") or []
        if c["id"] != "call_w1"
    ]
    assert confirmed["function"]["name"] == "delete_task"
    assert json.loads(confirmed["function"]["arguments"]) == {"task_id": milk.id, "confirm": True}
    [result] = [m for m in messages if m["role"] == "tool" and m["tool_call_id"] == confirmed["id"]]
    assert json.loads(result["content"]) == {
        "id": milk.id,
        "title": "Buy milk",
        "deleted": True,
        "change_id": ANY,
    }


# -- what makes a confirmation -----------------------------------------------------------------


def _refused_turn(tool: str, output: Any) -> list[Any]:
    call = {"type": "function_call", "call_id": "c1", "name": tool, "arguments": '{"task_id": 5}'}
    return [
        {"role": "user", "content": "delete 5"},
        call,
        {"type": "function_call_output", "call_id": "c1", "output": output},
    ]


def test_only_the_tools_data_for_the_calls_own_tool_makes_a_confirmation() -> None:
    needed = NeededConfirmation(
        "delete_task",
        {"task_id": 5, "confirm": True},
        "Delete task #5 'Buy milk' and its subtasks?",
        1,
        "Buy milk",
    )
    sentence = (
        "Error executing tool delete_task: Deleting task 5 'Buy milk' needs the user's yes: ask them, and "
        "call delete_task again with confirm: true once they say yes. Nothing was deleted."
    )
    parts = [
        {"type": "input_text", "text": sentence},
        {"type": "input_text", "text": json.dumps({META_KEY: needed.data()})},
    ]
    [pending] = pending_in(_refused_turn("delete_task", parts))
    assert (pending.id, pending.needed) == ("c1", needed)
    assert pending_in(_refused_turn("add_task", parts)) == []  # data about another tool than the call's
    assert pending_in(_refused_turn("delete_task", sentence)) == []  # the words alone are not the data
    assert pending_in(_refused_turn("delete_task", [parts[0]])) == []
