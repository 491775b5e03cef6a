"""The committed declarative subscriptions load in daprd, and a dropped message goes to the
subscription's dead-letter topic."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic

from devstack.components import RenderedResources, render

pytestmark = pytest.mark.integration


def _plain_app() -> FastAPI:
    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


async def test_committed_subscriptions_are_scoped_with_dead_letter_topics(
    sidecar_factory: Any, app_server_factory: Any
) -> None:
    server = app_server_factory(_plain_app())
    # app-id todo-audit: in scope of the task-events-audit subscription only
    sidecar = sidecar_factory("todo-audit", server.port, wait_for="app")
    async with httpx.AsyncClient(timeout=20) as client:
        meta = (await client.get(f"{sidecar.http_url}/v1.0/metadata")).json()
    subs = meta.get("subscriptions", [])
    assert [(s["pubsubname"], s["topic"]) for s in subs] == [("kafka-pubsub", "task-events")]
    sub = subs[0]
    assert sub["deadLetterTopic"] == "task-events-dlq"
    assert sub["rules"][0]["path"] == "/events/task-events"
    assert sub["type"] == "DECLARATIVE"
    components = {c["name"]: c["type"] for c in meta["components"]}
    assert components == {
        "kafka-pubsub": "pubsub.kafka",
        "statestore": "state.postgresql",
        "localsecretstore": "secretstores.local.env",
    }


SUBSCRIPTION = """\
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: {name}
spec:
  pubsubname: kafka-pubsub
  topic: {topic}
  routes:
    default: /events/drop
  deadLetterTopic: {topic}-dlq
scopes:
  - {app_id}
"""


async def test_dropped_message_goes_to_the_dead_letter_topic(
    sidecar_factory: Any,
    app_server_factory: Any,
    kafka_brokers: str,
    pg_url: str,
    session_id: str,
    tmp_path: Path,
) -> None:
    topic, app_id = f"stack-test-drop-{session_id}", f"stack-dlq-{session_id}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_brokers)
    try:
        admin.create_topics([NewTopic(t, 3, 1) for t in (topic, f"{topic}-dlq")])
    finally:
        admin.close()
    resources: RenderedResources = render(
        tmp_path / "resources",
        kafka_brokers=kafka_brokers,
        pg_url=pg_url,
        subscriptions=False,
        extra={"drop.yaml": SUBSCRIPTION.format(name=f"drop-{session_id}", topic=topic, app_id=app_id)},
    )
    app = FastAPI()
    seen = threading.Event()

    @app.post("/events/drop")
    async def drop(request: Request) -> dict[str, str]:
        await request.body()
        seen.set()
        return {"status": "DROP"}

    server = app_server_factory(app)
    sidecar = sidecar_factory(app_id, server.port, resources=resources, wait_for="app")
    async with httpx.AsyncClient(timeout=20) as client:
        resp = await client.post(
            f"{sidecar.http_url}/v1.0/publish/kafka-pubsub/{topic}",
            params={"metadata.partitionKey": "user-x"},
            json={"task_id": 9},
        )
        assert resp.status_code == 204, resp.text

    consumer = KafkaConsumer(bootstrap_servers=kafka_brokers, consumer_timeout_ms=1000)
    try:
        parts = [TopicPartition(f"{topic}-dlq", p) for p in range(3)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        records: list[Any] = []
        for _ in range(60):
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
            if records:
                break
    finally:
        consumer.close()
    assert seen.is_set()
    assert len(records) == 1
    envelope = json.loads(records[0].value)
    assert envelope["data"] == {"task_id": 9}
