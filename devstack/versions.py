"""Pinned versions of the real components the local stack runs.

Keep these in sync with ``devstack/dapr-build/go.mod`` and ``devstack/kafka/pom.xml``.
"""

from __future__ import annotations

DAPR_VERSION = "1.18.1"
KAFKA_VERSION = "4.1.2"
POSTGRES_MAJOR = "15"
#: The identity provider of the OAuth tests (``devstack/keycloak.py``); runs on Java 17.
KEYCLOAK_VERSION = "26.7.3"

#: Kafka protocol version Dapr's Kafka component (Sarama) announces; Kafka 4 dropped the
#: protocol versions older than 2.1 that Sarama's default (2.0.0) speaks.
KAFKA_PROTOCOL_VERSION = "3.9.0"

#: The local Kubernetes cluster (``python -m devstack cluster``). 1.34 still runs on Debian
#: bookworm's containerd 1.6 (CRI v1) and etcd 3.4; keep in sync with devstack/kube-build/go.mod.
KUBERNETES_VERSION = "1.34.4"
#: Keep in sync with devstack/helm-build/go.mod and devstack/coredns-build/go.mod.
HELM_VERSION = "3.22.1"
COREDNS_VERSION = "1.14.7"
#: The pod sandbox image, compiled from build/pause/linux/pause.c of the Kubernetes source.
PAUSE_VERSION = "3.10"
