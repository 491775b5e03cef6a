"""``python -m devstack cluster up|down|status``: the local single-node Kubernetes cluster."""

from __future__ import annotations

import argparse
import sys
import time

from devstack import cluster_addons
from devstack.cli import _table
from devstack.cluster import Cluster
from devstack.config import StackConfig
from devstack.errors import StackError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m devstack cluster",
        description="A single-node Kubernetes cluster (etcd, control plane, containerd, kubelet, "
        "kube-proxy, CoreDNS) with Dapr's control plane installed from its Helm chart. Needs root. "
        "State and logs live in $TODO_CLUSTER_DIR (default <stack dir>/cluster).",
    )
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start what is not running and install Dapr (safe to repeat)")
    up.add_argument("--no-dapr", action="store_true", help="start the cluster only")
    down = sub.add_parser("down", help="stop every process the cluster started")
    down.add_argument(
        "--purge", action="store_true", help="also delete its state (etcd, certificates, images)"
    )
    sub.add_parser(
        "deploy",
        help="PostgreSQL and Kafka stand-ins outside the cluster, the image, Secrets, migrations, "
        "then kubectl apply -k k8s/overlays/local",
    )
    sub.add_parser("status", help="pids and health")
    sub.add_parser("kubeconfig", help="print the admin kubeconfig path")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        cluster = Cluster(StackConfig.from_env())
        if args.command == "up":
            t0 = time.monotonic()
            started = cluster.up()
            print(f"[devstack] cluster ready in {time.monotonic() - t0:.0f}s", flush=True)
            if not args.no_dapr:
                cluster_addons.ensure_dapr(cluster)
            print(_table(cluster.status()))
            print(f"started: {', '.join(started) or 'nothing (already running)'}; logs in {cluster.logs}")
            print(f"export KUBECONFIG={cluster.kubeconfig}")
        elif args.command == "down":
            if args.purge:
                cluster.purge()
            else:
                cluster.down()
            print("cluster stopped" + (" and purged" if args.purge else ""))
        elif args.command == "deploy":
            from devstack import cluster_app

            t0 = time.monotonic()
            cluster_app.deploy(cluster)
            print(f"[devstack] todo-agent deployed in {time.monotonic() - t0:.0f}s")
            print(cluster.kubectl("-n", cluster_app.NAMESPACE, "get", "pods", "-o", "wide"))
        elif args.command == "kubeconfig":
            print(cluster.kubeconfig)
        else:
            print(_table(cluster.status()))
    except StackError as exc:
        print(f"devstack cluster: error: {exc}", file=sys.stderr)
        return 1
    return 0
