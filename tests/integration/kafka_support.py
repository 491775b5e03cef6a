"""Reading the real Kafka broker from tests: consumer-group readiness and end offsets."""

from __future__ import annotations

import time

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition


def wait_for_consumer_group(brokers: str, group: str, timeout: float = 60) -> None:
    """Until Kafka reports the group stable with members (its subscription is live)."""
    admin = KafkaAdminClient(bootstrap_servers=brokers)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            [description] = admin.describe_consumer_groups([group])
            if getattr(description, "state", "") == "Stable" and getattr(description, "members", []):
                return
            time.sleep(0.3)
        raise AssertionError(f"consumer group {group} did not become stable in {timeout}s")
    finally:
        admin.close()


def end_offsets(brokers: str, topic: str) -> dict[TopicPartition, int]:
    """Where each partition of ``topic`` ends now: read what comes after with these."""
    consumer = KafkaConsumer(bootstrap_servers=brokers, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        return dict(consumer.end_offsets(parts))
    finally:
        consumer.close()
