"""The per-turn MCP connection: the caller's identity on every call, with the per-process shortcuts
(known protocol version, shared keep-alive pool, tools converted once) shared safely between turns."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from mcp.client.session import ClientSession

from tasks.inputs import TaskQuery
from tasks.service import Actor
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
