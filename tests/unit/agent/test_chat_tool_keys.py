"""Idempotency keys on the chat's task tool calls: a turn run again on the same conversation
(same turn, same tool call id) writes once; another turn that makes the same call writes again,
even when the model repeats its call id."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from agents.testing import ScriptedModel, assistant_message, function_call

from tasks.inputs import TaskQuery
from tasks.service import Actor
from tests.conftest import JWT_SECRET
from tests.unit.agent.support import RunningApp, fail_next_append, running_app, settings_on_free_port, token

ALICE = Actor("alice", "Europe/Berlin")


def titles(app: RunningApp, actor: Actor) -> list[str]:
    return [t.title for t in app.container.tasks.list(actor, TaskQuery(status="all", limit=200)).items]


def adds_milk(call_id: str) -> list[list[Any]]:
    """A model's turn: add "Buy milk" with tool call ``call_id``, then say so."""
    return [
        [function_call("add_task", {"title": "Buy milk"}, call_id=call_id)],
        [assistant_message("Added.")],
    ]


@pytest.mark.parametrize("tools", ["in-process", "http"])
async def test_a_turn_sent_again_after_its_save_failed_adds_once_and_a_later_turn_adds_again(
    make_settings: Any, verifier: Any, monkeypatch: pytest.MonkeyPatch, tools: str
) -> None:
    model = ScriptedModel()
    settings = settings_on_free_port(make_settings, jwt_secret=JWT_SECRET)
    with running_app(settings, model=model) as app:
        if tools == "http":  # the key rides the request's _meta over streamable HTTP too
            app.chat.mcp_url = f"{app.url}/mcp"
        async with app.client(token(verifier, "alice")) as alice:
            model.extend([[assistant_message("Hello.")]])
            cid = (await alice.post("/api/chat", json={"message": "hi"})).json()["conversation_id"]

            fail_next_append(app.chat.store, monkeypatch)
            model.extend(adds_milk("add1"))
            asked = {"message": "add buy milk", "conversation_id": cid}
            lost = await alice.post("/api/chat", json=asked)
            assert lost.status_code == 502 and "could not be saved" in lost.json()["detail"]
            assert titles(app, ALICE) == ["Buy milk"]  # the tool wrote; the conversation did not record it

            # The same message on the same conversation: the same turn, and the model's same call.
            model.extend(adds_milk("add1"))
            again = await alice.post("/api/chat", json=asked)
            assert again.status_code == 200, again.text
            [call] = again.json()["tool_calls"]
            assert call["is_error"] is False and call["output"]["title"] == "Buy milk"
            assert titles(app, ALICE) == ["Buy milk"]

            # A later turn makes the same call, with the same call id: it is a new request.
            model.extend(adds_milk("add1"))
            later = await alice.post("/api/chat", json=asked)
            assert later.status_code == 200, later.text
            assert titles(app, ALICE) == ["Buy milk", "Buy milk"]
            assert later.json()["tool_calls"][0]["output"]["id"] != call["output"]["id"]


async def test_offline_turns_repeating_a_call_id_each_add_their_task(make_settings: Any) -> None:
    """With a short history per turn and the same clock, the offline model's call ids repeat from
    turn to turn (they digest the input's length and the time); the keys still tell turns apart."""
    settings = settings_on_free_port(make_settings, conversation_item_limit=4)
    with running_app(settings) as app:
        local = Actor(settings.user, "Europe/Berlin")
        moment = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
        app.chat.clock = lambda: moment
        async with app.client() as client:
            first = (await client.post("/api/chat", json={"message": "add buy milk"})).json()
            cid = first["conversation_id"]
            for _ in range(3):
                sent = await client.post(
                    "/api/chat", json={"message": "add buy milk", "conversation_id": cid}
                )
                assert sent.status_code == 200, sent.text
            shown = (await client.get(f"/api/conversations/{cid}")).json()["messages"]
        call_ids = [m["call_id"] for m in shown if m["role"] == "tool"]
        assert len(call_ids) == 4 and len(set(call_ids[1:])) == 1, call_ids  # repeated ids
        assert titles(app, local) == ["Buy milk"] * 4
