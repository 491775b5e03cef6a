"""Fixtures for the cluster tests (``make test-cluster``): todo-agent on a real single-node
Kubernetes cluster on this machine, with Dapr's control plane installed from its Helm chart.

The session starts (or reuses) everything with the same code as ``python -m devstack cluster up``
and ``... cluster deploy``: seconds when it already runs, minutes the first time (the binaries
are built once into ~/.cache/todo-agent). It needs root and the project image (``make image``);
a missing piece fails loudly with the command that provides it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from devstack import cluster_addons, cluster_app
from devstack.cluster import Cluster
from devstack.config import StackConfig
from devstack.errors import StackError
from tests.cluster.support import Deployed


@pytest.fixture(scope="session")
def deployed() -> Iterator[Deployed]:
    if os.geteuid() != 0:
        pytest.fail("the cluster tests need root (kubelet, containerd, iptables): run them as root")
    cluster = Cluster(StackConfig.from_env())
    try:
        cluster.up()
        cluster_addons.ensure_dapr(cluster)
        services = cluster_app.deploy(cluster)
    except StackError as exc:
        pytest.fail(f"the local cluster could not be brought up: {exc}")
    yield Deployed(cluster, cluster_app.database_url(services))
