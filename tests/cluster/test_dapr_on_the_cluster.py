"""The four roles on a real cluster: pods Ready with a Dapr sidecar the injector added, the
components the operator served are ours, secrets resolved by secretstores.kubernetes."""

from __future__ import annotations

import json

import pytest

from devstack.cluster_app import ROLES
from devstack.versions import DAPR_VERSION
from tests.cluster.support import Deployed, is_ready

pytestmark = pytest.mark.cluster


def test_every_role_runs_ready_with_a_daprd_sidecar_the_injector_added(deployed: Deployed) -> None:
    for role in ROLES:
        pods = deployed.pods(role)
        assert pods, f"no pod for {role}"
        for pod in pods:
            names = [c["name"] for c in pod["spec"]["containers"]]
            assert names == ["app", "daprd"], (role, names)
            assert is_ready(pod), (role, pod["status"].get("conditions"))
            statuses = {c["name"]: c for c in pod["status"]["containerStatuses"]}
            assert statuses["daprd"]["ready"] and statuses["app"]["ready"], (role, statuses)
            sidecar = next(c for c in pod["spec"]["containers"] if c["name"] == "daprd")
            assert sidecar["image"] == f"localhost/daprd:{DAPR_VERSION}", sidecar["image"]
            args = sidecar["args"]
            assert (
                args[args.index("--app-id") + 1] == role and args[args.index("--config") + 1] == "todo-config"
            )
    # The Deployments themselves never name daprd: the sidecar-injector webhook added it.
    for role in ROLES:
        spec = deployed.json("get", "deployment", role)["spec"]["template"]["spec"]
        assert [c["name"] for c in spec["containers"]] == ["app"]


def test_the_sidecars_run_our_components_served_by_the_operator_with_mtls(deployed: Deployed) -> None:
    metadata = deployed.sidecar_get("todo-api", "/v1.0/metadata")
    loaded = {c["name"]: c["type"] for c in metadata["components"]}
    assert loaded == {
        "kafka-pubsub": "pubsub.kafka",
        "kafka-pubsub-broadcast": "pubsub.kafka",
        "statestore": "state.postgresql",
        "kubernetes": "secretstores.kubernetes",
    }
    # The audit role is outside statestore's and kafka-pubsub-broadcast's scopes.
    audit = {c["name"] for c in deployed.sidecar_get("todo-audit", "/v1.0/metadata")["components"]}
    assert audit == {"kafka-pubsub", "kubernetes"}
    served = {i["metadata"]["name"] for i in deployed.json("get", "components.dapr.io")["items"]}
    assert served == {"kafka-pubsub", "kafka-pubsub-broadcast", "statestore"}
    sentry = deployed.cluster.kubectl("-n", "dapr-system", "get", "deploy", "dapr-sentry", "-o", "json")
    assert json.loads(sentry)["status"]["readyReplicas"] == 1
    control = deployed.cluster.kubectl(
        "-n", "dapr-system", "get", "configurations.dapr.io", "daprsystem", "-o", "json"
    )
    assert json.loads(control)["spec"]["mtls"]["enabled"] is True
    # Each sidecar got its workload certificate (an X.509 SVID) from sentry before it started.
    log = deployed.kubectl("logs", deployed.ready_pods("todo-api")[0]["metadata"]["name"], "-c", "daprd")
    assert "Starting workload identity expiry watcher" in log


def test_the_state_store_password_comes_from_the_kubernetes_secret_store_and_the_api_stays_closed(
    deployed: Deployed,
) -> None:
    # statestore's connectionString is a secretKeyRef resolved through secretstores.kubernetes:
    # a write and read through the sidecar only work when that secret was read.
    pod = deployed.ready_pods("todo-api")[0]["metadata"]["name"]
    script = (
        "import json,os,urllib.request as u;h={'dapr-api-token':os.environ['DAPR_API_TOKEN'],"
        "'content-type':'application/json'};b='http://127.0.0.1:3500/v1.0/state/statestore';"
        "u.urlopen(u.Request(b,data=json.dumps([{'key':'cluster-probe','value':{'ok':1}}]).encode(),headers=h));"
        "print(u.urlopen(u.Request(b+'/cluster-probe',headers=h)).read().decode())"
    )
    assert json.loads(deployed.kubectl("exec", pod, "-c", "app", "--", "python", "-c", script)) == {"ok": 1}
    rows = deployed.rows("select key from dapr_state where key like '%cluster-probe'")
    assert [r.key for r in rows] == ["todo-api||cluster-probe"]
    # The Configuration denies the secrets API itself (defaultAccess: deny): 403 for the app.
    script = (
        "import os,urllib.request as u,urllib.error as e\n"
        "r=u.Request('http://127.0.0.1:3500/v1.0/secrets/kubernetes/todo-secrets',"
        "headers={'dapr-api-token':os.environ['DAPR_API_TOKEN']})\n"
        "try:\n u.urlopen(r);print(200)\nexcept e.HTTPError as x:\n print(x.code)"
    )
    assert deployed.kubectl("exec", pod, "-c", "app", "--", "python", "-c", script).strip() == "403"
