"""Paths and look-ups shared by the deployment tests."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from tests.deploy.k8s_render import Manifest

REPO: Final = Path(__file__).resolve().parents[2]
K8S: Final = REPO / "k8s"
APP_OVERLAYS: Final = ("overlays/minikube", "overlays/cloud", "overlays/local")
KAFKA_OVERLAYS: Final = ("kafka/minikube", "kafka/cloud")
ALL_KUSTOMIZATIONS: Final = ("base", *APP_OVERLAYS, "kafka/base", *KAFKA_OVERLAYS)
ROLES: Final = ("api", "recurrence", "notifications", "audit")


def of_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def by_name(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    matches = [m for m in of_kind(manifests, kind) if m["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]
