"""Conversation memory in Dapr mode: the SDK's DaprSession over real daprd and the PostgreSQL state store."""

from __future__ import annotations

import asyncio
import json
import uuid
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


# -- a turn touches only its own conversation's keys -------------------------------------------
class CountingClient:
    """The real client, counting the reads and state transactions that reach the sidecar."""

    def __init__(self, client: DaprClient) -> None:
        self._client = client
        self.reads = 0
        self.transactions = 0

    async def get_state(self, *args: Any, **kwargs: Any) -> Any:
        self.reads += 1
        return await self._client.get_state(*args, **kwargs)

    async def get_bulk_state(self, *args: Any, **kwargs: Any) -> Any:
        self.reads += 1
        return await self._client.get_bulk_state(*args, **kwargs)

    async def execute_state_transaction(self, *args: Any, **kwargs: Any) -> Any:
        self.transactions += 1
        return await self._client.execute_state_transaction(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def contents(items: list[Any]) -> list[str]:
    return [item["content"] for item in items]


async def test_turns_in_two_conversations_of_one_user_take_one_read_and_one_write_each(
    dapr_env: dict[str, str],
) -> None:
    async with DaprClient(address=dapr_env["DAPR_GRPC_ENDPOINT"]) as client:
        counting = CountingClient(client)
        store = DaprConversationStore(lambda: counting, store_name=STORE)  # type: ignore[arg-type,return-value]
        name = unique("gina")
        first, second = await store.create(name, title="one"), await store.create(name, title="two")
        await store.append(name, first.id, [user("hello one")])
        await store.append(name, second.id, [user("hello two")])
        counting.reads = counting.transactions = 0

        await asyncio.gather(store.load(name, first.id), store.load(name, second.id))
        await asyncio.gather(
            store.append(name, first.id, [user("again one")]),
            store.append(name, second.id, [user("again two")]),
        )
        assert (counting.reads, counting.transactions) == (2, 2)  # no conflict, no retry
        assert contents(await store.load(name, first.id)) == ["hello one", "again one"]
        assert contents(await store.load(name, second.id)) == ["hello two", "again two"]


async def test_an_append_does_not_rewrite_the_users_index(dapr_env: dict[str, str]) -> None:
    async with DaprClient(address=dapr_env["DAPR_GRPC_ENDPOINT"]) as client:
        store = DaprConversationStore(client, store_name=STORE)
        name = unique("hana")
        info = await store.create(name, title="quiet index")
        before = await client.get_state(STORE, f"conversations:{name}")
        await store.load(name, info.id)
        await store.append(name, info.id, [user("first")])
        await store.append(name, info.id, [user("second")])  # without a load: reads, then writes
        after = await client.get_state(STORE, f"conversations:{name}")
    assert before.etag and after.etag == before.etag
    assert after.data == before.data


async def test_recent_lists_the_conversation_appended_last_first(dapr_env: dict[str, str]) -> None:
    async with DaprClient(address=dapr_env["DAPR_GRPC_ENDPOINT"]) as client:
        store = DaprConversationStore(client, store_name=STORE)
        name = unique("ida")
        a, b, c = [await store.create(name, title=title) for title in ("a", "b", "c")]
        assert [i.id for i in await store.recent(name)] == [c.id, b.id, a.id]
        await store.append(name, a.id, [user("bump a")])
        assert [i.id for i in await store.recent(name)] == [a.id, c.id, b.id]
        await store.append(name, b.id, [user("bump b")])
        listed = await store.recent(name)
        assert [i.id for i in listed] == [b.id, a.id, c.id]
        got = await store.get(name, b.id)
        assert got == listed[0] and got.updated_at > got.created_at == b.created_at
        renamed = await store.rename(name, a.id, "renamed a")
        assert (renamed.title, renamed.updated_at) == ("renamed a", listed[1].updated_at)
        # The SDK's session reads what this store wrote, and its created_at survives our appends.
        assert await store.session(name, b.id).get_items() == [user("bump b")]
        metadata = json.loads((await client.get_state(STORE, f"conversation:{name}:{b.id}:metadata")).data)
        assert metadata["created_at"] == str(int(b.created_at.timestamp()))


async def test_another_users_conversation_is_not_found_by_any_operation(dapr_env: dict[str, str]) -> None:
    async with DaprClient(address=dapr_env["DAPR_GRPC_ENDPOINT"]) as client:
        store = DaprConversationStore(client, store_name=STORE)
        alice, bob = unique("alice"), unique("bob")
        info = await store.create(alice, title="mine")
        await store.append(alice, info.id, [user("secret")])
        await store.create(bob, title="bob's own")  # bob has an index, without alice's id
        for attempt in (
            store.get(bob, info.id),
            store.load(bob, info.id),
            store.append(bob, info.id, [user("intruder")]),
            store.rename(bob, info.id, "x"),
            store.delete(bob, info.id),
        ):
            with pytest.raises(ConversationNotFound):
                await attempt
        assert contents(await store.load(alice, info.id)) == ["secret"]
        assert [i.title for i in await store.recent(bob)] == ["bob's own"]


async def test_conversations_written_by_the_previous_layout_still_list_load_and_append(
    dapr_env: dict[str, str],
) -> None:
    """The previous version kept ``updated_at`` in the index entry and wrote no ``updated_at_iso``."""
    name = unique("jack")
    appended, empty, no_items = "oldappended", "oldempty", "olditemless"
    entries = {
        appended: ("2026-01-01T10:00:00+00:00", "2026-01-03T10:00:00.250000+00:00"),
        empty: ("2026-01-02T10:00:00+00:00", "2026-01-02T10:00:00+00:00"),
        no_items: ("2025-12-01T10:00:00+00:00", "2025-12-01T10:00:00+00:00"),
    }
    index = {
        "conversations": {
            cid: {"title": f"title {cid}", "created_at": created, "updated_at": updated}
            for cid, (created, updated) in entries.items()
        }
    }
    async with DaprClient(address=dapr_env["DAPR_GRPC_ENDPOINT"]) as client:
        session = f"conversation:{name}:{appended}"
        await client.save_state(STORE, f"conversations:{name}", json.dumps(index))
        await client.save_state(STORE, f"{session}:messages", json.dumps([json.dumps(user("old"))]))
        await client.save_state(
            STORE,
            f"{session}:metadata",
            json.dumps({"session_id": session, "created_at": "1767261600", "updated_at": "1767434400"}),
        )
        await client.save_state(STORE, f"conversation:{name}:{empty}:messages", "[]")
        store = DaprConversationStore(client, store_name=STORE)

        listed = await store.recent(name)
        assert [i.id for i in listed] == [appended, empty, no_items]
        assert listed[0].updated_at.isoformat() == entries[appended][1]
        assert await store.get(name, appended) == listed[0]
        assert contents(await store.load(name, appended)) == ["old"]
        assert await store.load(name, empty) == []
        assert await store.load(name, no_items) == []

        await store.append(name, no_items, [user("new")])
        assert contents(await store.load(name, no_items)) == ["new"]
        await store.append(name, appended, [user("newer")])
        assert contents(await store.load(name, appended)) == ["old", "newer"]
        assert [i.id for i in await store.recent(name)] == [appended, no_items, empty]
        await store.delete(name, empty)
        assert [i.id for i in await store.recent(name)] == [appended, no_items]


async def test_the_index_outlives_its_ttl_while_a_conversation_is_in_use(dapr_env: dict[str, str]) -> None:
    async with DaprClient(address=dapr_env["DAPR_GRPC_ENDPOINT"]) as client:
        store = DaprConversationStore(client, store_name=STORE, ttl_seconds=2)
        name = unique("kim")
        idle = await store.create(name, title="idle")
        busy = await store.create(name, title="busy")
        await asyncio.sleep(1.2)
        await store.append(name, busy.id, [user("still here")])
        await asyncio.sleep(1.2)  # the index and the idle conversation were written 2.4 s ago
        assert [i.id for i in await store.recent(name)] == [busy.id]
        with pytest.raises(ConversationNotFound):
            await store.get(name, idle.id)
        with pytest.raises(ConversationNotFound):
            await store.load(name, idle.id)
        assert contents(await store.load(name, busy.id)) == ["still here"]
        fresh = await store.create(name, title="fresh")  # drops the expired entry
        stored = json.loads((await client.get_state(STORE, f"conversations:{name}")).data)
    assert set(stored["conversations"]) == {busy.id, fresh.id}


async def test_an_index_the_previous_layout_wrote_with_a_ttl_stops_expiring(dapr_env: dict[str, str]) -> None:
    name = unique("lea")
    cid = "oldttl"
    stamp = "2026-01-01T10:00:00+00:00"
    index = {"conversations": {cid: {"title": "old", "created_at": stamp, "updated_at": stamp}}}
    ttl = {"ttlInSeconds": "2"}
    async with DaprClient(address=dapr_env["DAPR_GRPC_ENDPOINT"]) as client:
        await client.save_state(STORE, f"conversations:{name}", json.dumps(index), state_metadata=ttl)
        await client.save_state(STORE, f"conversation:{name}:{cid}:messages", "[]", state_metadata=ttl)
        store = DaprConversationStore(client, store_name=STORE, ttl_seconds=2)
        await store.append(name, cid, [user("kept alive")])
        assert [i.id for i in await store.recent(name)] == [cid]  # rewrites the index without a TTL
        await asyncio.sleep(1.2)
        await store.append(name, cid, [user("and again")])
        await asyncio.sleep(1.2)
        assert [i.id for i in await store.recent(name)] == [cid]
        assert contents(await store.load(name, cid)) == ["kept alive", "and again"]
