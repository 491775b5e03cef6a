"""A small kustomize renderer for the subset k8s/ uses, so the tests need no kustomize binary.

docs = render(REPO / "k8s/overlays/minikube")   # list of manifests, as `kubectl kustomize` would

Supported kustomization fields: resources (files and directories), namespace, images and
patches (strategic merge patches by kind and name, or with a ``target`` kind/name). Built-in
kinds merge the lists kustomize merges by key (containers, env, volumes, ...); custom resources
(Dapr, Strimzi) have no merge keys, so a patch replaces their lists, exactly like kustomize.
A kustomization that uses any other field is refused rather than rendered differently.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Final

import yaml

SUPPORTED: Final = {"apiVersion", "kind", "namespace", "resources", "patches", "images"}
CUSTOM_GROUPS: Final = ("dapr.io", "kafka.strimzi.io")
MERGE_KEYS: Final = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
}
CLUSTER_SCOPED: Final = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}

Manifest = dict[str, Any]


def load_documents(path: Path) -> list[Manifest]:
    with path.open() as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


def render(directory: Path) -> list[Manifest]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - SUPPORTED
    if unknown:
        raise ValueError(f"{directory}: kustomization fields {sorted(unknown)} are not supported here")
    manifests: list[Manifest] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        manifests += render(path) if path.is_dir() else load_documents(path)
    for patch in kustomization.get("patches", []):
        _apply_patch_file(manifests, directory / patch["path"], patch.get("target"))
    for image in kustomization.get("images", []):
        _set_image(manifests, image)
    if "namespace" in kustomization:
        for manifest in manifests:
            if manifest["kind"] not in CLUSTER_SCOPED:
                manifest.setdefault("metadata", {})["namespace"] = kustomization["namespace"]
    return manifests


def _apply_patch_file(manifests: list[Manifest], path: Path, target: dict[str, str] | None) -> None:
    for patch in load_documents(path):
        if target:
            matches = [m for m in manifests if _matches_target(m, target)]
        else:
            matches = [
                m
                for m in manifests
                if m["kind"] == patch["kind"] and m["metadata"]["name"] == patch["metadata"]["name"]
            ]
        if not matches:
            raise ValueError(f"{path}: patch for {patch['kind']}/{patch['metadata']['name']} matches nothing")
        for manifest in matches:
            body = {k: v for k, v in patch.items() if k not in ("apiVersion", "kind", "metadata")}
            _merge(manifest, body, builtin=not _is_custom(manifest))
            _merge(manifest["metadata"], _patchable_metadata(patch), builtin=True)


def _patchable_metadata(patch: Manifest) -> dict[str, Any]:
    return {k: v for k, v in patch.get("metadata", {}).items() if k in ("labels", "annotations")}


def _matches_target(manifest: Manifest, target: dict[str, str]) -> bool:
    kind, name = manifest["kind"], manifest["metadata"]["name"]
    return kind == target.get("kind", kind) and name == target.get("name", name)


def _is_custom(manifest: Manifest) -> bool:
    return manifest["apiVersion"].split("/")[0] in CUSTOM_GROUPS


def _merge(base: dict[str, Any], patch: dict[str, Any], *, builtin: bool) -> None:
    for key, value in patch.items():
        current = base.get(key)
        if value is None:
            base.pop(key, None)
        elif isinstance(value, dict) and isinstance(current, dict):
            _merge(current, value, builtin=builtin)
        elif isinstance(value, list) and isinstance(current, list) and builtin and key in MERGE_KEYS:
            _merge_list(current, value, MERGE_KEYS[key])
        else:
            base[key] = copy.deepcopy(value)


def _merge_list(base: list[Any], patch: list[Any], key: str) -> None:
    for item in patch:
        existing = next((b for b in base if b.get(key) == item.get(key)), None)
        if existing is None:
            base.append(copy.deepcopy(item))
        else:
            _merge(existing, item, builtin=True)


def _set_image(manifests: list[Manifest], image: dict[str, str]) -> None:
    for container in iter_containers(manifests):
        name, _, tag = container["image"].partition(":")
        if name == image["name"]:
            container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"


def pod_spec(manifest: Manifest) -> dict[str, Any] | None:
    if manifest["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
        spec: dict[str, Any] = manifest["spec"]["template"]["spec"]
        return spec
    return None


def iter_containers(manifests: list[Manifest]) -> list[dict[str, Any]]:
    containers = []
    for manifest in manifests:
        spec = pod_spec(manifest)
        if spec is not None:
            containers += spec.get("containers", []) + spec.get("initContainers", [])
    return containers
