"""Reading the real Kafka broker from tests: consumer-group readiness and end offsets."""

from __future__ import annotations

import time

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata


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


def commit_offsets(brokers: str, group: str, offsets: dict[TopicPartition, int]) -> None:
    """Commit ``offsets`` for consumer ``group`` (which has no members yet), so its first member
    starts reading there, whatever the component's ``initialOffset`` and however often it rejoins."""
    consumer = KafkaConsumer(bootstrap_servers=brokers, group_id=group, enable_auto_commit=False)
    try:
        consumer.assign(list(offsets))
        consumer.commit({part: OffsetAndMetadata(offset, "", -1) for part, offset in offsets.items()})
    finally:
        consumer.close()
