"""Pinned versions of the real components the local stack runs.

Keep these in sync with ``devstack/dapr-build/go.mod`` and ``devstack/kafka/pom.xml``.
"""

from __future__ import annotations

DAPR_VERSION = "1.18.1"
KAFKA_VERSION = "4.1.2"
POSTGRES_MAJOR = "15"

#: Kafka protocol version Dapr's Kafka component (Sarama) announces; Kafka 4 dropped the
#: protocol versions older than 2.1 that Sarama's default (2.0.0) speaks.
KAFKA_PROTOCOL_VERSION = "3.9.0"
