"""The local cluster's configuration files: this machine's quirks are in them, and an
unchanged file is never rewritten (kube-proxy exits when its config file is touched)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from devstack.cluster import Cluster
from devstack.config import StackConfig


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cluster:
    monkeypatch.setenv("TODO_CLUSTER_DIR", str(tmp_path / "cluster"))
    monkeypatch.setenv("TODO_CLUSTER_NODE_IP", "192.0.2.7")
    c = Cluster(StackConfig(state_dir=tmp_path / "stack", cache_dir=tmp_path / "cache"))
    c._write_config()
    return c


def test_the_kubelet_and_containerd_accept_cgroup_v1_and_never_ask_for_a_negative_oom_score(
    cluster: Cluster,
) -> None:
    kubelet = yaml.safe_load((cluster.home / "kubelet.yaml").read_text())
    assert (kubelet["failCgroupV1"], kubelet["failSwapOn"], kubelet["oomScoreAdj"]) == (False, False, 0)
    assert kubelet["cgroupDriver"] == "cgroupfs" and kubelet["address"] == "192.0.2.7"
    containerd = (cluster.home / "containerd" / "config.toml").read_text()
    assert "restrict_oom_score_adj = true" in containerd
    assert f'address = "{cluster.containerd_sock}"' in containerd and str(cluster.home) in containerd
    cni = json.loads((cluster.home / "cni" / "net.d" / "10-devstack.conflist").read_text())
    assert [p["type"] for p in cni["plugins"]] == ["bridge", "portmap"]


def test_writing_the_configuration_again_leaves_unchanged_files_untouched(cluster: Cluster) -> None:
    files = [
        cluster.home / "kube-proxy.yaml",
        cluster.home / "kube-proxy.kubeconfig",
        cluster.home / "kubelet.yaml",
    ]
    for f in files:  # an old mtime: a rewrite shows even on a coarse clock
        os.utime(f, ns=(1, 1))
    cluster._write_config()
    assert {f.name: f.stat().st_mtime_ns for f in files} == {f.name: 1 for f in files}


def test_certificates_are_made_once_and_kept(cluster: Cluster) -> None:
    ca = (cluster.pki / "ca.crt").read_bytes()
    apiserver = (cluster.pki / "apiserver.crt").read_bytes()
    cluster._write_config()
    assert (cluster.pki / "ca.crt").read_bytes() == ca
    assert (cluster.pki / "apiserver.crt").read_bytes() == apiserver
