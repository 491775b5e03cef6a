"""Publishing through daprd reaches Kafka and a subscribing app, keyed by partition key."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import defaultdict
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic

pytestmark = pytest.mark.integration

PUBSUB = "kafka-pubsub"


def _create_topic(brokers: str, topic: str, partitions: int = 3) -> None:
    admin = KafkaAdminClient(bootstrap_servers=brokers)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    finally:
        admin.close()


def _read_topic(brokers: str, topic: str, expected: int, timeout: float = 30) -> list[Any]:
    consumer = KafkaConsumer(
        bootstrap_servers=brokers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=1000,
    )
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


Received = list[tuple[dict[str, Any], dict[str, str]]]


def _subscriber(topic: str, expected: int) -> tuple[FastAPI, Received, threading.Event]:
    """A subscriber app; the event is set once ``expected`` messages arrived."""
    app = FastAPI()
    received: Received = []
    done = threading.Event()

    @app.get("/dapr/subscribe")
    def subscribe() -> list[dict[str, str]]:
        return [{"pubsubname": PUBSUB, "topic": topic, "route": "/events/test"}]

    @app.post("/events/test")
    async def on_event(request: Request) -> dict[str, str]:
        received.append((json.loads(await request.body()), dict(request.headers)))
        if len(received) >= expected:
            done.set()
        return {"status": "SUCCESS"}

    return app, received, done


async def test_publish_reaches_kafka_and_subscriber_as_keyed_cloudevents(
    kafka_brokers: str, sidecar_factory: Any, app_server_factory: Any, session_id: str
) -> None:
    topic = f"stack-test-pubsub-{session_id}"
    _create_topic(kafka_brokers, topic)
    keys = ["user-a", "user-b", "user-c"]
    per_key = 5
    sent = len(keys) * per_key
    app, received, done = _subscriber(topic, sent)
    server = app_server_factory(app)
    sidecar_factory(f"stack-sub-{session_id}", server.port, wait_for="app")
    publisher = sidecar_factory(f"stack-pub-{session_id}")

    async with httpx.AsyncClient(base_url=publisher.http_url, timeout=20) as client:
        for seq in range(per_key):
            for key in keys:
                resp = await client.post(
                    f"/v1.0/publish/{PUBSUB}/{topic}",
                    params={"metadata.partitionKey": key},
                    json={"user_id": key, "seq": seq},
                )
                assert resp.status_code == 204, resp.text

    # In Kafka: CloudEvent envelopes, keyed by the partition key; one partition per key.
    records = _read_topic(kafka_brokers, topic, sent)
    assert len(records) == sent
    partitions_by_key: dict[str, set[int]] = defaultdict(set)
    for rec in records:
        envelope = json.loads(rec.value)
        assert envelope["specversion"] == "1.0"
        assert envelope["topic"] == topic
        assert envelope["pubsubname"] == PUBSUB
        assert envelope["source"] == f"stack-pub-{session_id}"
        assert rec.key.decode() == envelope["data"]["user_id"]
        partitions_by_key[rec.key.decode()].add(rec.partition)
    assert set(partitions_by_key) == set(keys)
    assert all(len(p) == 1 for p in partitions_by_key.values()), partitions_by_key

    # At the subscriber: every event once, as a CloudEvent, in order per key.
    await asyncio.to_thread(done.wait, 60)
    assert len(received) == sent, f"got {len(received)} of {sent}"
    seqs: dict[str, list[int]] = defaultdict(list)
    ids = set()
    for event, headers in received:
        assert event["specversion"] == "1.0"
        assert event["type"] == "com.dapr.event.sent"
        assert event["topic"] == topic
        assert "traceparent" in event or "traceparent" in headers
        ids.add(event["id"])
        seqs[event["data"]["user_id"]].append(event["data"]["seq"])
    assert len(ids) == sent
    assert all(s == list(range(per_key)) for s in seqs.values()), seqs
