"""The offline model with lists, subtasks, batches and undo, through the chat API end to end
(the embedded default: real tools, SQLite)."""

from __future__ import annotations

from typing import Any

from tasks.inputs import TaskDraft, TaskQuery
from tasks.service import Actor
from tests.unit.agent.support import running_app, settings_on_free_port


async def test_lists_subtasks_batches_and_undo_in_chat(make_settings: Any) -> None:
    settings = settings_on_free_port(make_settings)
    with running_app(settings) as app:
        me = Actor(settings.user, "Europe/Berlin")
        tasks = app.container.tasks
        tasks.create_list(me, "Groceries")
        async with app.client() as client:
            cid: str | None = None

            async def say(text: str) -> dict[str, Any]:
                nonlocal cid
                response = await client.post("/api/chat", json={"message": text, "conversation_id": cid})
                assert response.status_code == 200, response.text
                cid = response.json()["conversation_id"]
                return response.json()

            milk = await say("add milk to groceries")
            assert [c["name"] for c in milk["tool_calls"]] == ["lists", "add_task"]
            card = await say("add send a card to grandma")  # not a list: the words stay in the title
            assert card["reply"].startswith("Added #") and "Send a card to grandma" in card["reply"]
            shown = await say("show my groceries list")
            assert "Milk" in shown["reply"] and "grandma" not in shown["reply"]
            assert "Groceries (1 open)" in (await say("what lists do I have?"))["reply"]

            await say("add trip to rome")
            sub = await say("add a subtask pack passport to trip to rome")
            assert [c["name"] for c in sub["tool_calls"]] == ["list_tasks", "add_task"]
            [trip] = [t for t in tasks.list(me, TaskQuery(search="rome")).items]
            assert [t.title for t in tasks.list(me, TaskQuery(parent_id=trip.id)).items] == ["Pack passport"]

            for i in range(22):
                tasks.add(me, TaskDraft(title=f"Chore {i}", tags=["home"]))
            asked = await say("complete everything tagged home")
            assert "That would complete 22 tasks" in asked["reply"] and "Say yes" in asked["reply"]
            assert len(tasks.list(me, TaskQuery(tag="home")).items) == 22
            done = await say("yes")
            assert (
                done["reply"].startswith("Completed 22 tasks")
                and tasks.list(me, TaskQuery(tag="home")).items == []
            )
            undone = await say("undo that")
            assert undone["tool_calls"][0]["name"] == "undo" and undone["reply"].startswith("Done. Undid")
            assert len(tasks.list(me, TaskQuery(tag="home")).items) == 22
