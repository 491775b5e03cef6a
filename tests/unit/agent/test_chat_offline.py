"""The offline model through the chat API end to end, in the unauthenticated embedded default."""

from __future__ import annotations

from typing import Any

from tasks.service import Actor
from tests.unit.agent.support import running_app, settings_on_free_port, stream


async def test_add_list_complete_by_title_and_delete_with_confirmation(make_settings: Any) -> None:
    settings = settings_on_free_port(make_settings)
    with running_app(settings) as app:
        local = Actor(settings.user, "Europe/Berlin")
        async with app.client() as client:

            async def say(text: str, cid: str | None) -> dict[str, Any]:
                response = await client.post("/api/chat", json={"message": text, "conversation_id": cid})
                assert response.status_code == 200, response.text
                assert "model;dur=" in response.headers["server-timing"]
                return response.json()

            added = await say("add buy milk tomorrow at 5pm #groceries", None)
            cid = added["conversation_id"]
            assert added["tool_calls"][0]["name"] == "add_task"
            assert added["reply"].startswith("Added #")
            await say("add call the plumber friday high priority", cid)

            listed = await say("show my tasks", cid)
            assert listed["tool_calls"][0]["name"] == "list_tasks"
            assert "Buy milk" in listed["reply"] and "Call the plumber" in listed["reply"]

            done = await say("complete buy milk", cid)
            assert [c["name"] for c in done["tool_calls"]] == ["list_tasks", "complete_task"]
            assert "Buy milk" in done["reply"]

            asked = await say("delete the plumber task", cid)
            assert "yes" in asked["reply"].lower()
            refused = asked["tool_calls"][-1]
            assert refused["name"] == "delete_task" and refused["is_error"], "the tool asks for the yes"
            assert [c["action"] for c in asked["confirmations"]] == ["delete_task"]
            plumber = [
                t for t in app.container.tasks.list(local, _all()).items if "plumber" in t.title.lower()
            ]
            assert len(plumber) == 1

            events = await stream(client, "yes", cid)
            assert [n for n, _ in events if n in ("tool_call", "tool_result")] == ["tool_call", "tool_result"]
            assert events[1][1]["name"] == "delete_task" and events[-1][0] == "done"
            assert "Deleted" in events[-1][1]["reply"]
            streamed = "".join(data["text"] for name, data in events if name == "delta")
            assert streamed == events[-1][1]["reply"], "the reply made from the tool result is streamed"

            left = app.container.tasks.list(local, _all()).items
            assert [(t.title, t.completed) for t in left] == [("Buy milk", True)]
            transcript = (await client.get(f"/api/conversations/{cid}")).json()
            roles = [m["role"] for m in transcript["messages"]]
            assert roles.count("user") == 6 and roles.count("assistant") == 6 and "tool" in roles
            assert roles[-3:] == ["user", "tool", "assistant"]
            assert transcript["messages"][-1]["content"] == events[-1][1]["reply"]
            assert transcript["title"] == "add buy milk tomorrow at 5pm #groceries"


async def test_an_unclear_message_calls_no_tool_and_says_so(make_settings: Any) -> None:
    with running_app(settings_on_free_port(make_settings)) as app:
        async with app.client() as client:
            reply = (await client.post("/api/chat", json={"message": "blorp the flux capacitor"})).json()
    assert reply["tool_calls"] == []
    assert reply["reply"]


def _all() -> Any:
    from tasks.inputs import TaskQuery

    return TaskQuery(status="all")
