"""The checks a reviewer would otherwise do by hand: the manifests agree with the code
(app-ids, ports, routes, settings), every Dapr component a role uses is scoped to it, and
the rendered overlays carry no secret in plain text."""

from __future__ import annotations

import os
import re
from typing import Any, Final

import httpx
import pytest
import yaml

from tests.deploy.code_facts import (
    direct_env_reads,
    event_routes,
    role_app,
    serves,
    settings_classes,
    settings_fields,
)
from tests.deploy.deploy_support import ALL_KUSTOMIZATIONS, K8S, REPO, ROLES, by_name, of_kind
from tests.deploy.k8s_render import Manifest, load_documents, pod_spec, render
from todo_agent.cli import ROLE_PORTS

APP_ID_ANNOTATION: Final = "dapr.io/app-id"


def local_run_file() -> dict[str, dict[str, Any]]:
    """role -> its app in dapr.yaml (the local multi-app run file)."""
    apps = yaml.safe_load((REPO / "dapr.yaml").read_text())["apps"]
    return {app["command"][2]: app for app in apps}


def app_id_of(role: str) -> str:
    return str(local_run_file()[role]["appID"])


def role_of(app_id: str) -> str:
    return next(role for role in ROLES if app_id_of(role) == app_id)


def pod_annotations(deployment: Manifest) -> dict[str, str]:
    return dict(deployment["spec"]["template"]["metadata"].get("annotations", {}))


def app_container(manifest: Manifest) -> dict[str, Any]:
    spec = pod_spec(manifest)
    assert spec is not None
    return dict(spec["containers"][0])


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("roles")
    return {role: role_app(role, tmp) for role in ROLES}


# ---- app-ids, ports, probes ----


@pytest.mark.parametrize("role", ROLES)
def test_each_role_runs_with_the_app_id_and_port_the_code_and_dapr_yaml_use(
    app_overlay: list[Manifest], role: str
) -> None:
    port = ROLE_PORTS[role]
    assert local_run_file()[role]["appPort"] == port
    deployment = by_name(app_overlay, "Deployment", f"todo-{role}")
    notes = pod_annotations(deployment)
    assert notes["dapr.io/enabled"] == "true"
    assert notes[APP_ID_ANNOTATION] == app_id_of(role)
    assert notes["dapr.io/app-port"] == str(port)
    assert notes["dapr.io/app-protocol"] == "http"
    assert notes["dapr.io/app-health-check-path"] == "/healthz"
    container = app_container(deployment)
    assert container["args"] == ["serve", role, "--host", "0.0.0.0", "--port", str(port)]
    assert container["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    service = by_name(app_overlay, "Service", f"todo-{role}")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


@pytest.mark.parametrize("role", ROLES)
def test_probes_use_healthz_and_readyz_which_every_role_serves(
    app_overlay: list[Manifest], apps: dict[str, Any], role: str
) -> None:
    container = app_container(by_name(app_overlay, "Deployment", f"todo-{role}"))
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert serves(apps[role], "GET", "/healthz") and serves(apps[role], "GET", "/readyz")


@pytest.mark.parametrize("role", ROLES)
def test_every_role_has_resources_sidecar_resources_tokens_and_time_to_drain(
    app_overlay: list[Manifest], role: str
) -> None:
    deployment = by_name(app_overlay, "Deployment", f"todo-{role}")
    notes = pod_annotations(deployment)
    for field in ("cpu-request", "cpu-limit", "memory-request", "memory-limit"):
        assert notes[f"dapr.io/sidecar-{field}"]
    container = app_container(deployment)
    assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
    assert {"cpu", "memory"} <= container["resources"]["limits"].keys()
    assert by_name(app_overlay, "Configuration", notes["dapr.io/config"])
    env = {e["name"]: e for e in container["env"]}
    assert env["APP_API_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == notes["dapr.io/app-token-secret"]
    assert env["DAPR_API_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == notes["dapr.io/api-token-secret"]
    # The sidecar must outlive the app's outbox drain, and the pod must outlive both.
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    block = int(notes["dapr.io/block-shutdown-duration"].rstrip("s"))
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert block > pre_stop
    assert grace >= block + int(notes["dapr.io/graceful-shutdown-seconds"]) + pre_stop


def test_api_has_a_disruption_budget_and_an_autoscaler(app_overlay: list[Manifest]) -> None:
    api = by_name(app_overlay, "Deployment", "todo-api")
    labels = api["spec"]["template"]["metadata"]["labels"]
    pdb = by_name(app_overlay, "PodDisruptionBudget", "todo-api")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = by_name(app_overlay, "HorizontalPodAutoscaler", "todo-api")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "todo-api",
    }
    assert "replicas" not in api["spec"], "the autoscaler owns todo-api's replica count"


def test_the_migration_job_runs_the_same_image_without_a_sidecar(app_overlay: list[Manifest]) -> None:
    # `kubectl apply -l 'app.kubernetes.io/component in (config,migration)'` must bring along
    # everything the Job's pod needs.
    phase_one = {
        (m["kind"], m["metadata"]["name"])
        for m in app_overlay
        if m["metadata"].get("labels", {}).get("app.kubernetes.io/component") in ("config", "migration")
    }
    assert {
        ("Namespace", "todo"),
        ("ServiceAccount", "todo-agent"),
        ("ConfigMap", "todo-agent-env"),
    } <= phase_one
    job = by_name(app_overlay, "Job", "todo-migrate")
    container = app_container(job)
    assert container["args"] == ["migrate"]
    images = {app_container(d)["image"] for d in of_kind(app_overlay, "Deployment")}
    assert images == {container["image"]}
    assert job["spec"]["template"]["metadata"]["annotations"]["dapr.io/enabled"] == "false"
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "migration"
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


# ---- routes ----


def test_every_subscription_route_is_served_by_the_role_it_is_scoped_to(
    app_overlay: list[Manifest], apps: dict[str, Any]
) -> None:
    subscriptions = of_kind(app_overlay, "Subscription")
    assert subscriptions
    for subscription in subscriptions:
        route = subscription["spec"]["routes"]["default"]
        assert subscription["scopes"], f"{subscription['metadata']['name']} is not scoped"
        for app_id in subscription["scopes"]:
            role = role_of(app_id)
            assert serves(apps[role], "POST", route), f"{app_id} does not serve POST {route}"


def test_every_subscriber_route_the_code_serves_has_a_subscription(
    app_overlay: list[Manifest], apps: dict[str, Any]
) -> None:
    declared = {
        (role_of(app_id), s["spec"]["routes"]["default"])
        for s in of_kind(app_overlay, "Subscription")
        for app_id in s["scopes"]
    }
    served = {(role, route) for role in ROLES for route in event_routes(apps[role])}
    assert served, "no role serves a subscriber route"
    assert served <= declared, f"served without a Subscription: {sorted(served - declared)}"


def test_dapr_job_callbacks_are_served_by_the_api(apps: dict[str, Any]) -> None:
    assert serves(apps["api"], "POST", "/job/reminder-42")


async def test_subscription_and_job_routes_refuse_callers_without_the_app_token(
    apps: dict[str, Any],
) -> None:
    routes = [(role, route) for role in ROLES for route in event_routes(apps[role])]
    routes.append(("api", "/job/reminder-42"))
    for role, route in routes:
        transport = httpx.ASGITransport(app=apps[role])
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            response = await client.post(route, json={"id": "1", "data": {}})
        assert response.status_code == 401, f"{role} POST {route} answered {response.status_code}"


def test_subscriptions_match_the_local_dapr_components(app_overlay: list[Manifest]) -> None:
    def shape(subscriptions: list[Manifest]) -> set[tuple[str, str, str, tuple[str, ...]]]:
        return {
            (
                s["spec"]["topic"],
                s["spec"]["routes"]["default"],
                s["spec"]["deadLetterTopic"],
                tuple(s["scopes"]),
            )
            for s in subscriptions
        }

    local = [d for p in (REPO / "dapr-components").glob("*.yaml") for d in load_documents(p)]
    assert shape(of_kind(app_overlay, "Subscription")) == shape(of_kind(local, "Subscription"))


def test_every_topic_and_dead_letter_topic_exists_with_three_partitions(
    app_overlay: list[Manifest], kafka_overlay: list[Manifest]
) -> None:
    topics = {t["metadata"]["name"]: t["spec"] for t in of_kind(kafka_overlay, "KafkaTopic")}
    for subscription in of_kind(app_overlay, "Subscription"):
        for topic in (subscription["spec"]["topic"], subscription["spec"]["deadLetterTopic"]):
            assert topic in topics, f"no KafkaTopic {topic}"
    assert all(spec["partitions"] == 3 for spec in topics.values())
    pools = of_kind(kafka_overlay, "KafkaNodePool")
    brokers = sum(p["spec"]["replicas"] for p in pools if "broker" in p["spec"]["roles"])
    assert all(spec["replicas"] <= brokers for spec in topics.values())
    assert any("controller" in p["spec"]["roles"] for p in pools), "KRaft needs a controller pool"


# ---- Dapr components and scopes ----


def components_used_by(role: str, overlay: list[Manifest]) -> set[str]:
    from todo_agent.settings import Settings

    settings = Settings(database_url="sqlite://")
    used = {settings.pubsub_name}
    if role == "api":
        used.add(settings.statestore_name)
    app_id = app_id_of(role)
    used |= {s["spec"]["pubsubname"] for s in of_kind(overlay, "Subscription") if app_id in s["scopes"]}
    return used


@pytest.mark.parametrize("role", ROLES)
def test_every_component_a_role_uses_is_scoped_to_it(app_overlay: list[Manifest], role: str) -> None:
    for name in components_used_by(role, app_overlay):
        component = by_name(app_overlay, "Component", name)
        assert app_id_of(role) in component.get("scopes", []), f"{name} is not scoped to {app_id_of(role)}"


def test_every_component_is_scoped_to_known_app_ids_only(app_overlay: list[Manifest]) -> None:
    known = {app_id_of(role) for role in ROLES}
    for kind in ("Component", "Subscription", "Resiliency"):
        for resource in of_kind(app_overlay, kind):
            scopes = set(resource.get("scopes", []))
            assert scopes and scopes <= known, f"{kind}/{resource['metadata']['name']} scopes {scopes}"


def test_resiliency_targets_existing_components_apps_and_policies(app_overlay: list[Manifest]) -> None:
    (resiliency,) = of_kind(app_overlay, "Resiliency")
    policies = resiliency["spec"]["policies"]
    targets = resiliency["spec"]["targets"]
    components = {c["metadata"]["name"] for c in of_kind(app_overlay, "Component")}
    assert set(targets["components"]) <= components
    assert set(targets["apps"]) <= {app_id_of(role) for role in ROLES}
    refs = list(targets["apps"].values()) + [
        ref for directions in targets["components"].values() for ref in directions.values()
    ]
    kinds = {"timeout": "timeouts", "retry": "retries", "circuitBreaker": "circuitBreakers"}
    for ref in refs:
        for field, policy in ref.items():
            assert policy in policies[kinds[field]], f"unknown {field} policy {policy}"


def test_pubsub_uses_kafka_and_the_realtime_subscription_a_consumer_group_per_pod(
    app_overlay: list[Manifest],
) -> None:
    (updates,) = [s for s in of_kind(app_overlay, "Subscription") if s["spec"]["topic"] == "task-updates"]
    component = by_name(app_overlay, "Component", updates["spec"]["pubsubname"])
    metadata = {m["name"]: m.get("value") for m in component["spec"]["metadata"]}
    assert component["spec"]["type"] == "pubsub.kafka"
    assert metadata["consumerID"] == "{podName}" and "consumerGroup" not in metadata
    for name in {s["spec"]["pubsubname"] for s in of_kind(app_overlay, "Subscription")}:
        pubsub = by_name(app_overlay, "Component", name)
        assert {m["name"] for m in pubsub["spec"]["metadata"]} >= {"brokers", "authType"}


def test_the_state_store_reads_its_connection_string_from_the_kubernetes_secret_store(
    app_overlay: list[Manifest],
) -> None:
    store = by_name(app_overlay, "Component", "statestore")
    assert (store["spec"]["type"], store["spec"]["version"]) == ("state.postgresql", "v2")
    (connection,) = [m for m in store["spec"]["metadata"] if m["name"] == "connectionString"]
    assert "secretKeyRef" in connection and store["auth"]["secretStore"] == "kubernetes"


# ---- environment ----


def container_env(manifests: list[Manifest], manifest: Manifest) -> dict[str, Any]:
    """NAME -> literal value or the secretKeyRef, as the container will see it."""
    container = app_container(manifest)
    env: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        config_map = by_name(manifests, "ConfigMap", source["configMapRef"]["name"])
        env.update(config_map["data"])
    for item in container.get("env", []):
        env[item["name"]] = item.get("value", item.get("valueFrom"))
    return env


def workloads(manifests: list[Manifest]) -> list[Manifest]:
    return of_kind(manifests, "Deployment") + of_kind(manifests, "Job")


def test_every_env_var_set_in_the_manifests_is_one_the_code_reads(app_overlay: list[Manifest]) -> None:
    known = {name for *_, names, _required, _secret in settings_fields() for name in names}
    known |= {name for _file, name, _default in direct_env_reads()}
    for workload in workloads(app_overlay):
        unknown = set(container_env(app_overlay, workload)) - known
        assert not unknown, f"{workload['metadata']['name']} sets {unknown}, which no code reads"


def test_every_env_var_the_code_reads_is_set_or_defaulted(
    app_overlay: list[Manifest], monkeypatch: pytest.MonkeyPatch
) -> None:
    required_direct = {name for _file, name, has_default in direct_env_reads() if not has_default}
    required_fields = {frozenset(names) for *_, names, required, _secret in settings_fields() if required}
    for workload in workloads(app_overlay):
        env = container_env(app_overlay, workload)
        assert required_direct <= env.keys()
        assert all(names & env.keys() for names in required_fields)
        # And the settings accept what the manifests give them (production rules included).
        for name in [n for n in os.environ if n.startswith(("TODO_", "DAPR_", "APP_", "OPENAI_"))]:
            monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(
                name, value if isinstance(value, str) else "s3cret-from-a-kubernetes-secret-" * 2
            )
        for cls in settings_classes():
            cls()
        if workload["kind"] == "Deployment":  # a serving role: production's serving rules too
            from todo_agent.settings import Settings

            assert Settings().serving_problem() is None, workload["metadata"]["name"]


def test_settings_field_discovery_sees_the_shared_settings() -> None:
    names = {name for *_, names, _required, _secret in settings_fields() for name in names}
    assert {"TODO_DATABASE_URL", "TODO_JWT_SECRET", "APP_API_TOKEN", "DAPR_HTTP_PORT"} <= names


# ---- secrets ----

SECRET_NAME: Final = re.compile(r"(secret|token|password|passwd|api[-_]?key|private|credential)", re.I)
SECRET_COMPONENT_FIELD: Final = re.compile(r"(password|secret|token|connectionstring|key|cert)", re.I)
CREDENTIAL_PATTERNS: Final = (
    re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@'\"]+:[^@\s'\"/]+@", re.I),  # user:password@ in a URL
    re.compile(r"password=(?!\.\.\.)[^\s'\"]+", re.I),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"\bsk-[A-Za-z0-9_-]{20,}"),
)


def secret_env_names() -> set[str]:
    names = {name for *_, names, _required, secret in settings_fields() if secret for name in names}
    return names | {"TODO_DATABASE_URL"}  # a database URL carries the password


@pytest.mark.parametrize("kustomization", ALL_KUSTOMIZATIONS)
def test_no_plaintext_secret_in_any_rendered_manifest(kustomization: str) -> None:
    manifests = render(K8S / kustomization)
    assert not of_kind(manifests, "Secret"), "Secrets are created by the operator, never committed"
    secret_env = secret_env_names()
    for workload in workloads(manifests):
        for item in app_container(workload).get("env", []):
            if item["name"] in secret_env or SECRET_NAME.search(item["name"]):
                assert "secretKeyRef" in item.get("valueFrom", {}), f"{item['name']} is not from a Secret"
    for config_map in of_kind(manifests, "ConfigMap"):
        leaked = [k for k in config_map["data"] if k in secret_env or SECRET_NAME.search(k)]
        assert not leaked, f"ConfigMap {config_map['metadata']['name']} holds {leaked}"
    for component in of_kind(manifests, "Component"):
        for item in component["spec"]["metadata"]:
            if SECRET_COMPONENT_FIELD.search(item["name"]):
                assert "secretKeyRef" in item, f"{component['metadata']['name']}.{item['name']} is plain text"


def test_no_credentials_in_any_deployment_file() -> None:
    files = [p for p in K8S.rglob("*") if p.is_file()] + [REPO / "Dockerfile", REPO / ".dockerignore"]
    for path in files:
        text = path.read_text()
        for pattern in CREDENTIAL_PATTERNS:
            # Placeholders such as <password> or $NEON_PASSWORD in the docs are fine.
            found = [m.group(0) for m in pattern.finditer(text) if not re.search(r"[<$]", m.group(0))]
            assert not found, f"{path.relative_to(REPO)} contains {found}"
