"""Task changes travel outbox -> relay -> daprd -> Kafka -> daprd -> consumers, each role its own
process: the CloudEvents on Kafka, the next occurrence, the audit log, the owner's WebSockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets
from sqlmodel import Session, col, select

from events.cli import main as events_cli
from events.contracts import CLOUDEVENT_CONTENT_TYPE, cloud_event
from tasks.models import OutboxEvent, Task
from tests.integration.events.support import (
    APP_TOKEN,
    EventSystem,
    RoleLauncher,
    records_since,
    wait_until_async,
)
from tests.integration.kafka_support import commit_offsets, end_offsets
from tests.websocket_tab import Tab
from todo_agent.settings import Settings

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def tab(url: str, *, auth_message: str | None = None) -> AsyncIterator[Tab]:
    async with websockets.connect(url) as ws:
        if auth_message:
            await ws.send(json.dumps({"type": "auth", "token": auth_message}))
        client = Tab(ws)
        await wait_until_async(lambda: bool(client.messages), "hello", limit=10)
        assert client.messages[0]["type"] == "hello"
        yield client


async def test_a_task_lifecycle_reaches_kafka_recurrence_audit_and_only_the_owners_sockets(
    event_system: EventSystem, session_id: str
) -> None:
    system, alice, bob = event_system, f"alice-{session_id}", f"bob-{session_id}"
    before = {t: end_offsets(system.kafka_brokers, t) for t in ("task-events", "task-updates")}
    plain_url = f"ws://127.0.0.1:{system.api.port}/ws"
    async with (
        tab(system.ws_url(alice)) as tab1,
        tab(plain_url, auth_message=system.token(alice)) as tab2,
        tab(system.ws_url(bob)) as other,
        system.http(alice) as http,
    ):
        plants = (await http.post("/api/tasks", json={
            "title": "Water the plants", "recurrence": "every 3 days", "due": "2030-01-01T08:00:00Z",
        })).json()  # fmt: skip
        rent = (await http.post("/api/tasks", json={"title": "Pay rent"})).json()
        assert (
            await http.patch(f"/api/tasks/{rent['id']}", json={"title": "Pay the rent"})
        ).status_code == 200
        assert (await http.post(f"/api/tasks/{plants['id']}/complete")).status_code == 200
        assert (await http.delete(f"/api/tasks/{rent['id']}")).status_code == 200

        await wait_until_async(lambda: len(system.outbox_ids(alice)) == 6, "the next occurrence's event")
        expected = system.outbox_ids(alice)
        await wait_until_async(lambda: sorted(system.audit_event_ids(alice)) == sorted(expected), "audit")
        await wait_until_async(lambda: set(tab1.task_ids()) == set(tab2.task_ids()) == set(expected), "tabs")
        await asyncio.sleep(0.5)
        assert sorted(tab1.task_ids()) == sorted(tab2.task_ids()) == sorted(expected)  # no duplicates
        assert other.task_ids() == []

        kinds = [(m["event_type"], m["task_id"]) for m in tab1.messages if m["type"] == "task"]
        following = next(m for m in tab1.messages if m["type"] == "task" and m["id"] == expected[-1])
        assert sorted(kinds) == sorted([
            ("created", plants["id"]), ("created", rent["id"]), ("updated", rent["id"]),
            ("completed", plants["id"]), ("deleted", rent["id"]), ("created", following["task_id"]),
        ])  # fmt: skip
        assert following["task"]["due_at"] == "2030-01-04T08:00:00Z"
        pending = (await http.get("/api/tasks")).json()["items"]
        assert [t["id"] for t in pending] == [following["task_id"]]
        audit = (await http.get("/api/audit")).json()["items"]
        assert len(audit) == 6 and {e["action"] for e in audit} >= {
            "created",
            "updated",
            "completed",
            "deleted",
        }
    async with system.http(bob) as http:
        assert (await http.get("/api/audit")).json()["items"] == []

    for topic in ("task-events", "task-updates"):
        records = records_since(system.kafka_brokers, before[topic],
                                lambda e: e.get("data", {}).get("user_id") == alice, expected=6)  # fmt: skip
        assert sorted(e["id"] for _, e in records) == sorted(expected), topic
        assert all(key == alice and e["source"] == "todo-agent" for key, e in records)
        types = {e["id"]: e["type"] for _, e in records}
        assert types[expected[3]] == "todo.task.completed.v1" and types[expected[4]] == "todo.task.deleted.v1"


async def test_a_poison_message_goes_to_the_dead_letter_topic_and_the_partition_moves_on(
    event_system: EventSystem, session_id: str
) -> None:
    system, carol = event_system, f"carol-{session_id}"
    dlq_before = end_offsets(system.kafka_brokers, "task-events-dlq")
    poison_id = f"poison-{session_id}"
    poison = {"specversion": "1.0", "id": poison_id, "source": "todo-agent", "type": "todo.task.completed.v1",
              "datacontenttype": "application/json", "data": {"user_id": carol, "junk": True}}  # fmt: skip
    async with httpx.AsyncClient(base_url=system.api.sidecar.http_url, timeout=20) as dapr:
        reply = await dapr.post("/v1.0/publish/kafka-pubsub/task-events", content=json.dumps(poison),
                                params={"metadata.partitionKey": carol},
                                headers={"content-type": CLOUDEVENT_CONTENT_TYPE})  # fmt: skip
        assert reply.status_code == 204, reply.text
    async with system.http(carol) as http:
        await http.post("/api/tasks", json={"title": "after the poison"})
    await wait_until_async(lambda: len(system.audit_event_ids(carol)) == 1, "the next event's audit entry")
    dead = records_since(system.kafka_brokers, dlq_before, lambda e: e.get("id") == poison_id, expected=2)
    assert dead and dead[0][1]["data"] == poison["data"]


async def test_two_recurrence_consumers_given_the_same_completions_make_one_next_occurrence_each(
    event_system: EventSystem, role_launcher: RoleLauncher, session_id: str
) -> None:
    system, dave = event_system, f"dave-{session_id}"
    second = role_launcher.start("recurrence", system.recurrence.app_id)
    async with system.http(dave) as http:
        drafts = [{"title": f"daily {n}", "recurrence": "daily"} for n in range(10)]
        ids = [(await http.post("/api/tasks", json=draft)).json()["id"] for draft in drafts]
        for task_id in ids:
            await http.post(f"/api/tasks/{task_id}/complete")
    with Session(system.engine) as session:
        completions = session.exec(
            select(OutboxEvent).where(
                OutboxEvent.user_id == dave, OutboxEvent.event_type == "todo.task.completed.v1"
            )
        ).all()
        events = [cloud_event(row) for row in completions]

    async def deliver(url: str, event: dict[str, Any]) -> str:
        async with httpx.AsyncClient(timeout=30) as client:
            reply = await client.post(f"{url}/events/task-events", json={**event, "topic": "task-events"},
                                      headers={"dapr-api-token": APP_TOKEN})  # fmt: skip
            return str(reply.json()["status"])

    outcomes = await asyncio.gather(
        *(deliver(app.url, e) for e in events for app in (system.recurrence, second, system.recurrence))
    )
    assert set(outcomes) <= {"SUCCESS", "RETRY"}

    def next_occurrences() -> list[int]:
        with Session(system.engine) as session:
            statement = select(Task.previous_occurrence_id).where(col(Task.previous_occurrence_id).in_(ids))
            return [p for p in session.exec(statement).all() if p is not None]

    await wait_until_async(lambda: len(next_occurrences()) == 10, "ten next occurrences")
    await asyncio.sleep(1)
    assert sorted(next_occurrences()) == sorted(ids)


async def test_dead_letters_can_be_listed_and_replayed_through_dapr(
    event_system: EventSystem, sidecar_factory: Any, event_resources: Any, session_id: str,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    system, frank = event_system, f"frank-{session_id}"

    # The CLI's own sidecar; its app id is its consumer group, whose offsets the test commits
    # where it began reading (a new group would start at the newest offset here).
    def cli_settings(cli_id: str) -> Settings:
        sidecar = sidecar_factory(cli_id, None, resources=event_resources)
        for name, value in sidecar.app_env().items():
            monkeypatch.setenv(name, value)
        return Settings(dapr_http_port=sidecar.http_port, dapr_grpc_port=sidecar.grpc_port)

    def poison(n: int) -> dict[str, Any]:
        return {"specversion": "1.0", "id": f"dead-{n}-{session_id}", "source": "todo-agent",
                "type": "todo.task.completed.v1", "data": {"user_id": frank, "n": n}}  # fmt: skip

    async def publish(topic: str, event: dict[str, Any]) -> None:
        async with httpx.AsyncClient(base_url=system.api.sidecar.http_url, timeout=20) as dapr:
            reply = await dapr.post(f"/v1.0/publish/kafka-pubsub/{topic}", content=json.dumps(event),
                                    params={"metadata.partitionKey": frank},
                                    headers={"content-type": CLOUDEVENT_CONTENT_TYPE})  # fmt: skip
            assert reply.status_code == 204, reply.text

    async def on_topic(topic: str, since: Any, event_ids: list[str]) -> list[dict[str, Any]]:
        def wanted(event: dict[str, Any]) -> bool:
            return event.get("id") in event_ids

        found = await asyncio.to_thread(
            records_since, system.kafka_brokers, since, wanted, expected=len(event_ids)
        )
        assert sorted(e["id"] for _, e in found) == sorted(event_ids), f"{event_ids} on {topic} within 30 s"
        return [e for _, e in found]

    async def run_cli(
        action: str, since: Any, topic: str = "task-events"
    ) -> tuple[list[dict[str, Any]], str]:
        cli_id = f"todo-dlq-{action}-{session_id}"
        await asyncio.to_thread(commit_offsets, system.kafka_brokers, cli_id, since)
        settings = cli_settings(cli_id)
        args = ["dlq", action, "--topic", topic, "--wait", "5"]
        assert await asyncio.to_thread(events_cli, args, settings) == 0
        out, err = capsys.readouterr()
        return [json.loads(line) for line in out.splitlines()], err

    # list: a poison event that both task-events consumers drop leaves two dead letters, which
    # stay for the next run. (That the list shows both is not asserted: daprd 1.18 keys a
    # streaming subscription's answers by CloudEvent id, so two messages of one id in flight at
    # once, from two partitions, can be answered as one.)
    dead = end_offsets(system.kafka_brokers, "task-events-dlq")
    first = poison(1)
    await publish("task-events", first)
    await on_topic("task-events-dlq", dead, [first["id"]] * 2)
    listed, said = await run_cli("list", dead)
    assert first["id"] in [e["id"] for e in listed], said
    assert all(e["dead_letter_topic"] == "task-events-dlq" for e in listed)

    # replay: one dead letter per event goes back to its topic; a second one of the same event
    # is acknowledged and does not hold up what follows it. (A topic of this test's own, with no
    # consumers, so nothing is dead-lettered again meanwhile.)
    topic = f"dlq-test-{session_id}"
    second, third = poison(2), poison(3)
    for event in (second, second, third):
        await publish(f"{topic}-dlq", event)  # one partition (one key), in this order
    dead = {part: 0 for part in end_offsets(system.kafka_brokers, f"{topic}-dlq")}
    await on_topic(f"{topic}-dlq", dead, [second["id"], second["id"], third["id"]])
    replayed_events, said = await run_cli("replay", dead, topic)
    assert [e["id"] for e in replayed_events] == [second["id"], third["id"]], said
    assert (
        "2 dead letter(s) replayed" in said
        and "1 more dead letter(s) of the same event(s) acknowledged" in said
    )
    replayed = {part: 0 for part in end_offsets(system.kafka_brokers, topic)}
    await on_topic(topic, replayed, [second["id"], third["id"]])
