"""What the local cluster runs on top of the node: CoreDNS, storage for Dapr's scheduler, Dapr.

- CoreDNS: Kubernetes' own addon manifest (``cluster/addons/dns/coredns/coredns.yaml.sed`` of
  the pinned ``k8s.io/kubernetes`` module) with the locally built image;
- ``hostPath`` PersistentVolumes under the cluster folder for the Dapr scheduler's etcd (this
  cluster has no storage provisioner; Minikube's would make them);
- Dapr: ``helm upgrade --install`` of the chart inside the pinned Dapr module
  (``charts/dapr``) into ``dapr-system`` with mTLS on and ``global.registry=localhost`` so the
  chart runs the locally packaged ``localhost/dapr:<version>`` image — what a user does with
  ``helm install dapr dapr/dapr``, minus the registry.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

from devstack import cluster_bin, cluster_images
from devstack.errors import StackError
from devstack.versions import DAPR_VERSION

if TYPE_CHECKING:
    from devstack.cluster import Cluster

DAPR_NAMESPACE = "dapr-system"
DAPR_RELEASE = "dapr"


def _kubernetes_source() -> Path:
    return cluster_bin._kubernetes_source()


def coredns_manifest() -> str:
    """Kubernetes' CoreDNS addon with this cluster's domain, DNS address and image."""
    from devstack.cluster import CLUSTER_DOMAIN, DNS_SERVICE_IP

    sed = _kubernetes_source() / "cluster" / "addons" / "dns" / "coredns" / "coredns.yaml.sed"
    text = sed.read_text()
    text = text.replace("$DNS_DOMAIN", CLUSTER_DOMAIN).replace("$DNS_SERVER_IP", DNS_SERVICE_IP)
    text = text.replace("$DNS_MEMORY_LIMIT", "170Mi")
    return text.replace("registry.k8s.io/coredns/coredns:v1.12.1", cluster_images.coredns_ref())


def wait_rollout(cluster: Cluster, kind_name: str, namespace: str, timeout: int = 300) -> None:
    cluster.kubectl(
        "rollout", "status", kind_name, "-n", namespace, f"--timeout={timeout}s", timeout=timeout + 30
    )


def ensure_coredns(cluster: Cluster) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=coredns_manifest())
    wait_rollout(cluster, "deployment/coredns", "kube-system")


def dapr_chart() -> Path:
    """``charts/dapr`` of the pinned Dapr module (from the Go module cache)."""
    env = dict(os.environ, GOTOOLCHAIN="local", GOFLAGS="-mod=mod")
    out = subprocess.run(
        ["go", "list", "-m", "-f", "{{.Dir}}", "github.com/dapr/dapr"],
        capture_output=True,
        text=True,
        env=env,
        cwd=cluster_bin.DEVSTACK / "dapr-build",
        check=False,
    )
    chart = Path(out.stdout.strip()) / "charts" / "dapr"
    if out.returncode != 0 or not (chart / "Chart.yaml").is_file():
        raise StackError(
            f"cannot find Dapr {DAPR_VERSION}'s Helm chart in the Go module cache: {out.stderr.strip()}"
        )
    return chart


#: Dapr 1.18's chart always runs three scheduler replicas (an etcd quorum), each with a volume.
SCHEDULER_REPLICAS = 3


def _scheduler_volumes(cluster: Cluster) -> str:
    docs = []
    for i in range(SCHEDULER_REPLICAS):
        path = cluster.home / "volumes" / f"dapr-scheduler-{i}"
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o777)  # the scheduler runs as a non-root user; hostPath ignores fsGroup
        docs.append(
            f"""apiVersion: v1
kind: PersistentVolume
metadata:
  name: devstack-dapr-scheduler-{i}
spec:
  capacity: {{storage: 16Gi}}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  hostPath: {{path: {path}, type: DirectoryOrCreate}}
"""
        )
    return "---\n".join(docs)


def helm(cluster: Cluster, *args: str, timeout: float = 900) -> str:
    exe = cluster_bin.HELM.path(cluster.cfg, "helm")
    env = dict(
        os.environ, KUBECONFIG=str(cluster.kubeconfig), HELM_CACHE_HOME=str(cluster.home / "helm" / "cache")
    )
    env.update(
        HELM_CONFIG_HOME=str(cluster.home / "helm" / "config"),
        HELM_DATA_HOME=str(cluster.home / "helm" / "data"),
    )
    out = subprocess.run(
        [str(exe), *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )
    if out.returncode != 0:
        raise StackError(f"helm {' '.join(args[:2])} failed: {out.stderr.strip()}")
    return out.stdout


def ensure_dapr(cluster: Cluster, *, progress: bool = True) -> None:
    """Dapr's control plane from its Helm chart, with the locally built image, mTLS on."""
    cluster_bin.ensure(cluster_bin.HELM, cluster.cfg, progress=progress)
    cluster_images.ensure_dapr_image(cluster, progress=progress)
    cluster.kubectl("apply", "--server-side", "-f", "-", input=_scheduler_volumes(cluster))
    started = time.monotonic()
    if progress:
        print(
            f"[devstack] helm upgrade --install {DAPR_RELEASE} (Dapr {DAPR_VERSION}) into {DAPR_NAMESPACE}",
            flush=True,
        )
    helm(
        cluster,
        "upgrade", "--install", DAPR_RELEASE, str(dapr_chart()),
        "--namespace", DAPR_NAMESPACE, "--create-namespace",
        "--set", "global.registry=localhost",
        "--set", f"global.tag={DAPR_VERSION}",
        "--set", "global.mtls.enabled=true",
        "--set", "global.ha.enabled=false",
        "--set", "global.prometheus.enabled=false",
        "--set", "dapr_scheduler.cluster.storageSize=16Gi",
        "--wait", "--timeout", "10m",
    )  # fmt: skip
    if progress:
        print(f"[devstack] Dapr control plane ready in {time.monotonic() - started:.0f}s", flush=True)
