"""Conversation memory in Dapr mode: the SDK's DaprSession layout over daprd's HTTP state API, with
real daprd and the PostgreSQL state store."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import psycopg
import pytest
from dapr.aio.clients import DaprClient

from agent.dapr_state import (
    DaprStateClient,
    Operation,
    StateConflict,
    StateStoreError,
    delete_operation,
    upsert_operation,
)
from agent.memory import ConversationNotFound, Item
from agent.memory_dapr import DaprConversationStore
from devstack.procs import free_port
from sidecar import Sidecar
from tests.conftest import JWT_SECRET
from tests.unit.agent.support import content, running_app, settings_on_free_port, token

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


def user(text: str) -> Item:
    return {"role": "user", "content": text}


def state_client(dapr_env: dict[str, str]) -> DaprStateClient:
    return DaprStateClient(Sidecar.at(dapr_env["DAPR_HTTP_ENDPOINT"]), store_name=STORE)


@contextlib.asynccontextmanager
async def dapr_store(
    dapr_env: dict[str, str], *, state: DaprStateClient | None = None, **kwargs: Any
) -> AsyncIterator[DaprConversationStore]:
    """A store over the sidecar's HTTP API (as the api builds it), closed at the end."""
    store = DaprConversationStore(state or state_client(dapr_env), **kwargs)
    try:
        yield store
    finally:
        await store.close()


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


async def test_a_confirmation_asked_before_a_restart_is_answered_once_after_it(
    dapr_settings: Any, verifier: Any, pg_libpq_url: str
) -> None:
    """The pending confirmation lives in the conversation (the state store), not in a process:
    another api process shows it and runs it, once."""
    alice = token(verifier, "alice")
    with running_app(dapr_settings) as first:
        async with first.client(alice) as client:
            added = (await client.post("/api/chat", json={"message": "add water the plants"})).json()
            cid = added["conversation_id"]
            asked = await client.post(
                "/api/chat", json={"message": "delete water the plants", "conversation_id": cid}
            )
            [confirm] = asked.json()["confirmations"]
            assert confirm["action"] == "delete_task" and "Water the plants" in confirm["question"]

    with running_app(dapr_settings) as second:
        async with second.client(alice) as client:
            shown = (await client.get(f"/api/conversations/{cid}")).json()
            assert shown["confirmations"] == [confirm]
            path = f"/api/conversations/{cid}/confirmations/{confirm['id']}"
            presses = await asyncio.gather(*(client.post(path, json={"confirm": True}) for _ in range(2)))
            assert sorted(p.status_code for p in presses) == [200, 409], [p.text for p in presses]
            assert (await client.get(f"/api/conversations/{cid}")).json()["confirmations"] == []
    with psycopg.connect(pg_libpq_url) as conn:
        kinds = [
            row[0]
            for row in conn.execute(
                "select event_type from outbox where user_id = 'alice' and task_id = %s",
                (confirm_task(confirm),),
            )
        ]
    assert kinds.count("todo.task.deleted.v1") == 1


def confirm_task(confirm: dict[str, Any]) -> int:
    """The task id in a delete_task confirmation's question ("Delete task #7 '…' …?")."""
    return int(confirm["question"].split("#", 1)[1].split(" ", 1)[0])


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
    async with dapr_store(dapr_env) as store:
        info = await store.create("carol", title="busy")
        others = await asyncio.gather(*(store.create("carol", title=f"other {n}") for n in range(5)))
        await asyncio.gather(*(store.append("carol", info.id, [user(f"m{n}")]) for n in range(12)))
        items = await store.load("carol", info.id)
        listed = await store.recent("carol")
    assert sorted(content(i) for i in items) == sorted(f"m{n}" for n in range(12))
    assert {c.id for c in listed} == {info.id, *(o.id for o in others)}


async def test_conversations_expire_after_their_ttl(dapr_env: dict[str, str]) -> None:
    async with dapr_store(dapr_env, ttl_seconds=1) as store:
        info = await store.create("dave", title="short-lived")
        await store.append("dave", info.id, [user("hello")])
        assert await store.load("dave", info.id) == [user("hello")]
        await asyncio.sleep(2.5)
        with pytest.raises(ConversationNotFound):
            await store.load("dave", info.id)


async def test_an_append_on_a_stale_load_keeps_the_other_writers_items(dapr_env: dict[str, str]) -> None:
    async with dapr_store(dapr_env) as store, dapr_store(dapr_env) as other:
        info = await store.create("frank", title="stale")
        await store.append("frank", info.id, [user("first")])
        assert await store.load("frank", info.id) == [user("first")]  # this turn's snapshot
        await other.append("frank", info.id, [user("from elsewhere")])  # another replica, meanwhile
        await store.append("frank", info.id, [user("second")])  # stale etags: conflict, re-read
        items = await store.load("frank", info.id)
    assert contents(items) == ["first", "from elsewhere", "second"]


# -- a turn touches only its own conversation's keys -------------------------------------------
class CountingState(DaprStateClient):
    """The real HTTP client, counting the reads and state transactions that reach the sidecar."""

    reads = 0
    transactions = 0

    async def get_bulk(self, keys: Sequence[str]) -> Any:
        self.reads += 1
        return await super().get_bulk(keys)

    async def transact(self, operations: Sequence[Operation]) -> None:
        self.transactions += 1
        await super().transact(operations)


def counting_state(dapr_env: dict[str, str]) -> CountingState:
    return CountingState(Sidecar.at(dapr_env["DAPR_HTTP_ENDPOINT"]), store_name=STORE)


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def contents(items: list[Item]) -> list[str]:
    return [content(item) for item in items]


async def test_turns_in_two_conversations_of_one_user_take_one_read_and_one_write_each(
    dapr_env: dict[str, str],
) -> None:
    counting = counting_state(dapr_env)
    async with dapr_store(dapr_env, state=counting) as store:
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
    async with DaprClient(address=dapr_env["DAPR_GRPC_ENDPOINT"]) as client, dapr_store(dapr_env) as store:
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
    made: list[DaprClient] = []

    def grpc_client() -> DaprClient:
        made.append(DaprClient(address=dapr_env["DAPR_GRPC_ENDPOINT"]))
        return made[-1]

    async with (
        DaprClient(address=dapr_env["DAPR_GRPC_ENDPOINT"]) as client,
        dapr_store(dapr_env, grpc_client=grpc_client) as store,
    ):
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
        assert made == []  # the store's own calls make no gRPC client
        # The SDK's session reads what this store wrote, and its created_at survives our appends.
        assert await store.session(name, b.id).get_items() == [user("bump b")]
        assert len(made) == 1
        metadata = json.loads((await client.get_state(STORE, f"conversation:{name}:{b.id}:metadata")).data)
        assert metadata["created_at"] == str(int(b.created_at.timestamp()))


async def test_another_users_conversation_is_not_found_by_any_operation(dapr_env: dict[str, str]) -> None:
    async with dapr_store(dapr_env) as store:
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
    async with dapr_store(dapr_env) as store:
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
    async with (
        DaprClient(address=dapr_env["DAPR_GRPC_ENDPOINT"]) as client,
        dapr_store(dapr_env, ttl_seconds=2) as store,
    ):
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
    async with dapr_store(dapr_env, ttl_seconds=2) as store:
        await store.append(name, cid, [user("kept alive")])
        assert [i.id for i in await store.recent(name)] == [cid]  # rewrites the index without a TTL
        await asyncio.sleep(1.2)
        await store.append(name, cid, [user("and again")])
        await asyncio.sleep(1.2)
        assert [i.id for i in await store.recent(name)] == [cid]
        assert contents(await store.load(name, cid)) == ["kept alive", "and again"]


# -- daprd's HTTP answers ------------------------------------------------------------------------
async def test_daprd_reports_every_lost_etag_or_first_write_race_as_a_conflict(
    dapr_env: dict[str, str],
) -> None:
    """What daprd 1.18 answers over HTTP: 409 for a save with a stale etag, 500 "no item was
    updated" for a first write of a taken key, 500 "possible etag mismatch" for a transaction."""
    key, other, stale = unique("race"), unique("race-other"), str(uuid.uuid4())
    state = state_client(dapr_env)
    try:
        await state.save(key, ["first"], first_write=True)
        value, etag = await state.get(key)
        assert value == ["first"] and etag
        conflicts = (
            state.save(key, ["second"], etag=stale, first_write=True),
            state.save(key, ["second"], first_write=True),
            state.transact(
                [upsert_operation(key, ["second"], etag=stale), upsert_operation(other, {"a": "1"})]
            ),
            state.transact([upsert_operation(key, ["second"], etag=stale)]),
            state.transact([delete_operation(key, etag=stale)]),
        )
        for attempt in conflicts:
            with pytest.raises(StateConflict):
                await attempt
        assert await state.get_bulk([key, other]) == {key: (["first"], etag)}  # nothing was written
        await state.transact(
            [upsert_operation(key, ["second"], etag=etag), upsert_operation(other, {"a": "1"})]
        )
        assert [v for v, _ in (await state.get_bulk([key, other])).values()] == [["second"], {"a": "1"}]
    finally:
        await state.aclose()


async def test_a_refusal_that_is_not_a_conflict_is_an_error_naming_the_store(
    dapr_env: dict[str, str],
) -> None:
    state = DaprStateClient(Sidecar.at(dapr_env["DAPR_HTTP_ENDPOINT"]), store_name="no-such-store")
    try:
        with pytest.raises(StateStoreError) as raised:
            await state.get_bulk(["a"])
    finally:
        await state.aclose()
    assert not isinstance(raised.value, StateConflict)
    assert str(raised.value).startswith("The state store no-such-store refused to read keys: 400 ")
    assert "state store no-such-store is not found" in str(raised.value)


async def test_two_replicas_appending_to_one_conversation_at_once_keep_both_turns(
    dapr_env: dict[str, str],
) -> None:
    """Both turns load the same items and etag; one transaction loses the race over HTTP, is
    recognised as a conflict, and is retried from a fresh read."""
    first, second = counting_state(dapr_env), counting_state(dapr_env)
    async with dapr_store(dapr_env, state=first) as one, dapr_store(dapr_env, state=second) as two:
        name = unique("mia")
        info = await one.create(name, title="race")
        await one.append(name, info.id, [user("hello")])
        first.transactions = 0
        await asyncio.gather(one.load(name, info.id), two.load(name, info.id))
        await asyncio.gather(
            one.append(name, info.id, [user("from one")]), two.append(name, info.id, [user("from two")])
        )
        assert first.transactions + second.transactions == 3  # one of the two was retried
        items = contents(await one.load(name, info.id))
    assert items[0] == "hello" and sorted(items[1:]) == ["from one", "from two"]


async def test_the_ttl_reaches_the_items_and_metadata_rows_but_not_the_index(
    dapr_env: dict[str, str], pg_libpq_url: str
) -> None:
    async with dapr_store(dapr_env, ttl_seconds=3600) as store:
        name = unique("noa")
        info = await store.create(name, title="expiring")
        await store.append(name, info.id, [user("hello")])
    session = f"conversation:{name}:{info.id}"
    with psycopg.connect(pg_libpq_url) as conn:
        rows = conn.execute(
            "select key, extract(epoch from expires_at - now()) from dapr_state where key like %s",
            (f"%||conversation%:{name}%",),
        ).fetchall()
    left = {key.split("||", 1)[1]: seconds for key, seconds in rows}
    assert set(left) == {f"conversations:{name}", f"{session}:messages", f"{session}:metadata"}
    assert left[f"conversations:{name}"] is None
    assert 3500 < left[f"{session}:messages"] <= 3600 and 3500 < left[f"{session}:metadata"] <= 3600


async def test_a_sidecar_that_is_down_fails_at_once_with_a_clear_error() -> None:
    address = f"http://127.0.0.1:{free_port()}"
    store = DaprConversationStore(DaprStateClient(Sidecar.at(address), store_name=STORE))
    started = time.monotonic()
    try:
        with pytest.raises(StateStoreError) as raised:
            await store.load("olga", "some-conversation")
        with pytest.raises(StateStoreError):
            await store.append("olga", "some-conversation", [user("lost")])
    finally:
        await store.close()
    assert time.monotonic() - started < 5
    assert str(raised.value).startswith(
        f"Could not read keys in the state store {STORE}: the Dapr sidecar at {address} is unreachable ("
    )


# -- long conversations --------------------------------------------------------------------------
async def test_a_long_conversations_turn_reads_and_writes_a_bounded_number_of_items(
    dapr_env: dict[str, str], pg_libpq_url: str
) -> None:
    counting = counting_state(dapr_env)
    async with dapr_store(dapr_env, state=counting, recent_max=20, recent_keep=10) as store:
        name = unique("kai")
        info = await store.create(name, title="long")
        said: list[str] = []
        for turn in range(100):
            await store.load(name, info.id, limit=8)
            words = [f"t{turn}m{n}" for n in range(3)]
            counting.reads = counting.transactions = 0
            await store.append(name, info.id, [user(word) for word in words])
            assert (counting.reads, counting.transactions) == (0, 1)  # on the load's snapshot
            said += words
            stored, _ = await counting.get(f"conversation:{name}:{info.id}:messages")
            assert len(stored) <= 20  # what a turn reads and rewrites, at turn 1 as at turn 100
        assert contents(await store.load(name, info.id, limit=8)) == said[-8:]
        assert contents(await store.load(name, info.id, limit=25)) == said[-25:]
        assert contents(await store.load(name, info.id)) == said  # the transcript: all of it
        await store.delete(name, info.id)
    with psycopg.connect(pg_libpq_url) as conn:
        left = conn.execute(
            "select key from dapr_state where key like %s", (f"%||conversation:{name}:%",)
        ).fetchall()
    assert left == []  # the archive went with the conversation


async def test_appends_racing_while_the_items_are_archived_keep_every_item(dapr_env: dict[str, str]) -> None:
    async with (
        dapr_store(dapr_env, recent_max=5, recent_keep=2) as store,
        dapr_store(dapr_env, recent_max=5, recent_keep=2) as other,
    ):
        name = unique("lena")
        info = await store.create(name, title="busy and long")
        await asyncio.gather(
            *(
                (store if n % 2 else other).append(name, info.id, [user(f"m{n}"), user(f"m{n}b")])
                for n in range(24)
            )
        )
        items = await store.load(name, info.id)
    assert sorted(contents(items)) == sorted([f"m{n}" for n in range(24)] + [f"m{n}b" for n in range(24)])
    for n in range(24):  # each turn's items stay together and in order
        assert contents(items).index(f"m{n}b") == contents(items).index(f"m{n}") + 1
