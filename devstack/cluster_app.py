"""Deploying todo-agent onto the local cluster the way README's Minikube steps do.

``python -m devstack cluster deploy``: start the managed-database and managed-Kafka stand-ins
(a devstack PostgreSQL and Kafka of the cluster's own, outside the cluster, on the node's bridge
address), import the project image into the node's containerd, create the Secrets (random tokens,
kept across runs), run the migration Job, then ``kubectl apply -k k8s/overlays/local`` and wait
for every role to roll out.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from devstack.cluster import BRIDGE_IP, Cluster, services_config
from devstack.config import StackConfig, repo_root
from devstack.errors import StackError
from devstack.kafka import Kafka
from devstack.postgres import Postgres

NAMESPACE = "todo"
OVERLAY = repo_root() / "k8s" / "overlays" / "local"
#: The manifests say ``todo-agent:0.1.0``; Kubernetes normalises that to this name.
IMAGE = "docker.io/library/todo-agent:0.1.0"
ROLES = ("todo-api", "todo-recurrence", "todo-notifications", "todo-audit")


def ensure_services(cluster: Cluster) -> StackConfig:
    """PostgreSQL and Kafka outside the cluster, reachable from pods at the node's bridge address."""
    cfg = services_config(cluster)
    Postgres(cfg).up()
    Kafka(cfg).up()
    return cfg


def stop_services(cluster: Cluster, *, purge: bool = False) -> None:
    """Stop the stand-ins; with ``purge`` also delete their data."""
    cfg = services_config(cluster)
    Kafka(cfg).down()
    postgres = Postgres(cfg)
    postgres.down()
    if purge:
        postgres.purge()


def database_url(cfg: StackConfig) -> str:
    return f"postgresql://todo:todo@{BRIDGE_IP}:{cfg.pg_port}/todo"


def _podman_env() -> dict[str, str]:
    env = dict(os.environ)
    conf = Path.home() / ".cache" / "todo-agent" / "image" / "containers.conf"
    if conf.is_file():
        env.setdefault("CONTAINERS_CONF", str(conf))
    return env


def ensure_image(cluster: Cluster) -> None:
    """The project image (built by ``make image``) in the node's containerd, re-imported when
    podman holds a newer build (containerd lists every image also by its config digest)."""
    podman = shutil.which("podman") or "podman"
    env = _podman_env()
    found = subprocess.run(
        [podman, "image", "inspect", "--format", "{{.Id}}", IMAGE],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if found.returncode != 0:
        raise StackError(
            f"the project image {IMAGE} is not in podman's storage ({found.stderr.strip()}): "
            "build it with `make image`"
        )
    if f"sha256:{found.stdout.strip()}" in cluster._ctr("images", "ls", "-q", check=False).stdout.split():
        return
    with tempfile.TemporaryDirectory(prefix="devstack-image-") as tmp:
        archive = Path(tmp) / "todo-agent.tar"
        out = subprocess.run(
            [podman, "save", "--quiet", "-o", str(archive), IMAGE],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if out.returncode != 0:
            raise StackError(f"podman save {IMAGE} failed: {out.stderr.strip()}")
        cluster._ctr("images", "import", str(archive))


def _secret_value(cluster: Cluster, name: str, key: str) -> str | None:
    out = cluster.kubectl(
        "-n", NAMESPACE, "get", "secret", name, "-o", f"jsonpath={{.data.{key}}}", check=False
    )
    return base64.b64decode(out).decode() if out.strip() else None


def _apply_secret(cluster: Cluster, name: str, data: dict[str, str]) -> None:
    args = ["-n", NAMESPACE, "create", "secret", "generic", name, "--dry-run=client", "-o", "yaml"]
    args += [f"--from-literal={k}={v}" for k, v in data.items()]
    manifest = cluster.kubectl(*args)
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=manifest)


def ensure_secrets(cluster: Cluster, cfg: StackConfig) -> None:
    """The three Secrets of README's "Secrets" step, pointing at the stand-ins; tokens kept."""
    cluster.kubectl("apply", "--server-side", "-f", str(repo_root() / "k8s" / "base" / "namespace.yaml"))
    jwt = _secret_value(cluster, "todo-secrets", "jwt-secret") or secrets.token_hex(32)
    _apply_secret(
        cluster,
        "todo-secrets",
        {
            "database-url": database_url(cfg),
            "statestore-connection-string": (
                f"host={BRIDGE_IP} port={cfg.pg_port} user=todo password=todo dbname=todo sslmode=disable"
            ),
            "jwt-secret": jwt,
        },
    )
    for name in ("todo-app-api-token", "todo-dapr-api-token"):
        token = _secret_value(cluster, name, "token") or secrets.token_hex(32)
        _apply_secret(cluster, name, {"token": token})


def migrate(cluster: Cluster) -> None:
    """README's "Apply (migrations first)": the Job alone, waited for, then the rest."""
    cluster.kubectl("-n", NAMESPACE, "delete", "job", "todo-migrate", "--ignore-not-found", "--wait=true")
    cluster.kubectl(
        "apply",
        "--server-side",
        "-k",
        str(OVERLAY),
        "-l",
        "app.kubernetes.io/component in (config,migration)",
    )
    out = cluster.kubectl(
        "-n", NAMESPACE, "wait", "job/todo-migrate", "--for=condition=complete", "--timeout=300s",
        check=False, timeout=330,
    )  # fmt: skip
    if "condition met" not in out:
        logs = cluster.kubectl("-n", NAMESPACE, "logs", "job/todo-migrate", "--tail=30", check=False)
        raise StackError(f"the migration Job did not complete:\n{logs}")


#: The api's NodePort (k8s/overlays/local/api-nodeport.yaml).
API_NODE_PORT = 30080


def _rendered(cluster: Cluster) -> str:
    """``k8s/overlays/local`` as kustomize renders it, with this node's address added to the hosts
    the api answers to: it is how this machine reaches the NodePort, and the edge refuses unknown
    ``Host`` headers (a Minikube user sets TODO_ALLOWED_HOSTS to ``$(minikube ip):30080`` alike)."""
    import json

    import yaml

    documents = [d for d in yaml.safe_load_all(cluster.kubectl("kustomize", str(OVERLAY))) if d]
    for document in documents:
        if document.get("kind") == "ConfigMap" and document["metadata"]["name"] == "todo-agent-env":
            document["data"]["TODO_ALLOWED_HOSTS"] = json.dumps([f"{cluster.ip}:{API_NODE_PORT}"])
    text: str = yaml.safe_dump_all(documents, sort_keys=False)
    return text


def deploy(cluster: Cluster) -> StackConfig:
    """Everything above, in order; returns the stand-ins' configuration."""
    cfg = ensure_services(cluster)
    ensure_image(cluster)
    ensure_secrets(cluster, cfg)
    migrate(cluster)
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=_rendered(cluster))
    for role in ROLES:
        cluster.kubectl(
            "-n", NAMESPACE, "rollout", "status", f"deployment/{role}", "--timeout=600s", timeout=630
        )  # fmt: skip
    return cfg
