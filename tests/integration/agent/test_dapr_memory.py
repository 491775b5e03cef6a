"""Conversation memory in Dapr mode: the SDK's DaprSession over real daprd and the PostgreSQL state store."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from dapr.aio.clients import DaprClient

from agent.memory import ConversationNotFound
from agent.memory_dapr import DaprConversationStore
from tests.conftest import JWT_SECRET
from tests.unit.agent.support import running_app, settings_on_free_port, token

pytestmark = pytest.mark.integration

STORE = "statestore"


@pytest.fixture
def dapr_env(sidecar_factory: Any, session_id: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A sidecar for the api; its ports in the environment, as ``dapr run`` provides them."""
    sidecar = sidecar_factory(f"todo-api-{session_id}")
    env = sidecar.app_env()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def dapr_settings(make_settings: Any, pg_url: str, dapr_env: dict[str, str]) -> Any:
    return settings_on_free_port(
        make_settings,
        database_url=pg_url,
        jwt_secret=JWT_SECRET,
        dapr_http_port=int(dapr_env["DAPR_HTTP_PORT"]),
        dapr_grpc_port=int(dapr_env["DAPR_GRPC_PORT"]),
    )


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


async def test_history_survives_an_api_restart(dapr_settings: Any, verifier: Any, pg_libpq_url: str) -> None:
    alice = token(verifier, "alice")
    with running_app(dapr_settings) as first:
        assert type(first.chat.store).__name__ == "DaprConversationStore"
        async with first.client(alice) as client:
            added = (await client.post("/api/chat", json={"message": "add buy milk tomorrow 5pm"})).json()
            cid = added["conversation_id"]
            asked = await client.post(
                "/api/chat", json={"message": "delete buy milk", "conversation_id": cid}
            )
            assert "yes" in asked.json()["reply"].lower()

    with running_app(dapr_settings) as second:
        async with second.client(alice) as client:
            listed = (await client.get("/api/conversations")).json()["items"]
            assert [c["id"] for c in listed] == [cid]
            before = (await client.get(f"/api/conversations/{cid}")).json()["messages"]
            assert [m["content"] for m in before if m["role"] == "user"] == [
                "add buy milk tomorrow 5pm",
                "delete buy milk",
            ]
            # The model sees the history after the restart: "yes" confirms the earlier question.
            confirmed = (
                await client.post("/api/chat", json={"message": "yes", "conversation_id": cid})
            ).json()
            assert [c["name"] for c in confirmed["tool_calls"]] == ["delete_task"]
            assert confirmed["reply"].startswith("Deleted")

    with psycopg.connect(pg_libpq_url) as conn:
        keys = [row[0] for row in conn.execute("select key from dapr_state where key like %s", (f"%{cid}%",))]
    assert keys and all(f"conversation:alice:{cid}" in key for key in keys)


async def test_two_messages_at_once_to_one_conversation_keep_both(dapr_settings: Any, verifier: Any) -> None:
    with running_app(dapr_settings) as app:
        async with app.client(token(verifier, "alice")) as client:
            cid = (await client.post("/api/chat", json={"message": "add first task"})).json()[
                "conversation_id"
            ]
            replies = await asyncio.gather(
                *(
                    client.post("/api/chat", json={"message": f"add task number {n}", "conversation_id": cid})
                    for n in range(2, 6)
                )
            )
            assert [r.status_code for r in replies] == [200] * 4, [r.text for r in replies]
            messages = (await client.get(f"/api/conversations/{cid}")).json()["messages"]
    said = [m["content"] for m in messages if m["role"] == "user"]
    assert sorted(said) == sorted(["add first task", *(f"add task number {n}" for n in range(2, 6))])
    assert len([m for m in messages if m["role"] == "assistant"]) == 5
    assert len([m for m in messages if m["role"] == "tool"]) == 5


async def test_another_users_conversation_id_is_not_found(dapr_settings: Any, verifier: Any) -> None:
    with running_app(dapr_settings) as app:
        async with app.client(token(verifier, "alice")) as alice, app.client(token(verifier, "bob")) as bob:
            cid = (await alice.post("/api/chat", json={"message": "add walk the dog"})).json()[
                "conversation_id"
            ]
            assert (await bob.get(f"/api/conversations/{cid}")).status_code == 404
            assert (
                await bob.post("/api/chat", json={"message": "yes", "conversation_id": cid})
            ).status_code == 404
            assert (await bob.delete(f"/api/conversations/{cid}")).status_code == 404
            assert (await bob.get("/api/conversations")).json() == {"items": []}
            assert (await alice.get(f"/api/conversations/{cid}")).status_code == 200
            assert (await alice.delete(f"/api/conversations/{cid}")).status_code == 204
            assert (await alice.get(f"/api/conversations/{cid}")).status_code == 404


async def test_etag_retries_keep_every_concurrent_append(dapr_env: dict[str, str]) -> None:
    async with DaprClient(address=dapr_env["DAPR_GRPC_ENDPOINT"]) as client:
        store = DaprConversationStore(client, store_name=STORE)
        info = await store.create("carol", title="busy")
        others = await asyncio.gather(*(store.create("carol", title=f"other {n}") for n in range(5)))
        await asyncio.gather(*(store.append("carol", info.id, [user(f"m{n}")]) for n in range(12)))
        items = await store.load("carol", info.id)
        listed = await store.recent("carol")
    assert sorted(i["content"] for i in items) == sorted(f"m{n}" for n in range(12))
    assert {c.id for c in listed} == {info.id, *(o.id for o in others)}


async def test_conversations_expire_after_their_ttl(dapr_env: dict[str, str]) -> None:
    async with DaprClient(address=dapr_env["DAPR_GRPC_ENDPOINT"]) as client:
        store = DaprConversationStore(client, store_name=STORE, ttl_seconds=1)
        info = await store.create("dave", title="short-lived")
        await store.append("dave", info.id, [user("hello")])
        assert await store.load("dave", info.id) == [user("hello")]
        await asyncio.sleep(2.5)
        with pytest.raises(ConversationNotFound):
            await store.load("dave", info.id)


async def test_an_append_on_a_stale_load_keeps_the_other_writers_items(dapr_env: dict[str, str]) -> None:
    async with DaprClient(address=dapr_env["DAPR_GRPC_ENDPOINT"]) as client:
        store = DaprConversationStore(client, store_name=STORE)
        info = await store.create("frank", title="stale")
        await store.append("frank", info.id, [user("first")])
        assert await store.load("frank", info.id) == [user("first")]  # this turn's snapshot
        other = DaprConversationStore(client, store_name=STORE)  # another replica writes meanwhile
        await other.append("frank", info.id, [user("from elsewhere")])
        await store.append("frank", info.id, [user("second")])  # stale etags: conflict, re-read
        items = await store.load("frank", info.id)
    assert [i["content"] for i in items] == ["first", "from elsewhere", "second"]
