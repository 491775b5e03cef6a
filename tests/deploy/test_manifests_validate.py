"""Every rendered manifest validates: built-in kinds against the Kubernetes OpenAPI schemas that
kubernetes-validate ships (strict: unknown fields fail), Dapr and Strimzi resources against the
schemas kept in k8s/schemas/."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any, Final

import pytest
from jsonschema import Draft202012Validator
from kubernetes_validate.utils import ValidationError, validate

from tests.deploy.deploy_support import ALL_KUSTOMIZATIONS, K8S, REPO
from tests.deploy.k8s_render import Manifest, load_documents, render

# The oldest and the newest Kubernetes minor versions the manifests are meant for.
KUBERNETES_VERSIONS: Final = ("1.30.0", "1.37.0")
CUSTOM_GROUPS: Final = ("dapr.io", "kafka.strimzi.io")


@cache
def custom_schema(api_version: str, kind: str) -> Draft202012Validator:
    path = K8S / "schemas" / f"{api_version.replace('/', '-')}-{kind}.json"
    assert path.exists(), f"no schema for {api_version} {kind}: add {path.relative_to(REPO)}"
    schema = json.loads(path.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def problems_of(manifest: Manifest) -> list[str]:
    where = f"{manifest['kind']}/{manifest['metadata']['name']}"
    if manifest["apiVersion"].split("/")[0] in CUSTOM_GROUPS:
        errors = custom_schema(manifest["apiVersion"], manifest["kind"]).iter_errors(manifest)
        return [f"{where} at {'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]
    problems = []
    for version in KUBERNETES_VERSIONS:
        try:
            validate(manifest, version, strict=True)
        except ValidationError as error:
            at = "/".join(map(str, error.path))
            problems.append(f"{where} (Kubernetes {version}) at {at}: {error.message}")
    return problems


@pytest.mark.parametrize("kustomization", ALL_KUSTOMIZATIONS)
def test_every_rendered_manifest_validates_against_its_schema(kustomization: str) -> None:
    manifests = render(K8S / kustomization)
    assert manifests
    problems = [problem for manifest in manifests for problem in problems_of(manifest)]
    assert not problems, "\n".join(problems)


def test_the_local_dapr_resources_validate_too() -> None:
    files = sorted((REPO / "dapr-components").glob("*.yaml"))
    manifests = [doc for path in files for doc in load_documents(path)]
    assert manifests
    problems = [problem for manifest in manifests for problem in problems_of(manifest)]
    assert not problems, "\n".join(problems)


def test_a_typo_in_a_dapr_resource_fails_validation() -> None:
    component: dict[str, Any] = {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Component",
        "metadata": {"name": "statestore"},
        "spec": {"type": "state.postgresql", "version": "v2", "metadata": [{"name": "x", "valeu": "y"}]},
        "scope": ["todo-api"],
    }
    assert len(problems_of(component)) >= 2


def test_a_typo_in_a_deployment_fails_validation() -> None:
    deployment = load_documents(K8S / "base" / "deployments.yaml")[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    assert problems_of(deployment)


def test_the_renderer_merges_builtin_lists_by_key_and_replaces_custom_lists(tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "kustomization.yaml").write_text("resources: [things.yaml]\n")
    (tmp_path / "base" / "things.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n"
        "spec: {template: {spec: {containers: [{name: a, image: 'x:1', env: [{name: A, value: '1'}]}]}}}\n"
        "---\napiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: c}\n"
        "spec: {type: pubsub.kafka, version: v1, metadata: [{name: a, value: '1'}, {name: b, value: '2'}]}\n"
    )
    (tmp_path / "kustomization.yaml").write_text(
        "namespace: ns\nresources: [base]\npatches: [{path: p.yaml}]\n"
        "images: [{name: x, newName: r/x, newTag: '2'}]\n"
    )
    (tmp_path / "p.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n"
        "spec: {template: {spec: {containers: [{name: a, env: [{name: B, value: '2'}]}]}}}\n"
        "---\napiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: c}\n"
        "spec: {metadata: [{name: z, value: '9'}]}\n"
    )
    deployment, component = render(tmp_path)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "r/x:2"
    assert [e["name"] for e in container["env"]] == ["A", "B"]
    assert component["spec"]["metadata"] == [{"name": "z", "value": "9"}]
    assert deployment["metadata"]["namespace"] == component["metadata"]["namespace"] == "ns"
