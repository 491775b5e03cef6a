"""``stack up`` twice is harmless; ``stack down`` leaves no process behind.

Runs a second, private stack (own folder, own ports) so the session's shared stack is
untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.cli import main
from devstack.config import StackConfig
from devstack.kafka import Kafka, _cluster_id, ensure_libs
from devstack.procs import free_port, pid_alive, port_open

pytestmark = pytest.mark.integration

PORT_VARS = (
    "TODO_STACK_PG_PORT",
    "TODO_STACK_KAFKA_PORT",
    "TODO_STACK_KAFKA_CONTROLLER_PORT",
    "TODO_STACK_SCHEDULER_PORT",
    "TODO_STACK_SCHEDULER_HEALTHZ_PORT",
    "TODO_STACK_SCHEDULER_ETCD_PORT",
    "TODO_STACK_SCHEDULER_ETCD_PEER_PORT",
    "TODO_STACK_JAEGER_OTLP_GRPC_PORT",
    "TODO_STACK_JAEGER_OTLP_HTTP_PORT",
    "TODO_STACK_JAEGER_UI_PORT",
    "TODO_STACK_JAEGER_QUERY_GRPC_PORT",
    "TODO_STACK_JAEGER_HEALTH_PORT",
)
MANAGED = ("postgres", "kafka", "scheduler", "jaeger")


@pytest.fixture
def private_stack_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    """Point ``devstack.cli`` at a fresh folder and free ports (under /tmp: the postgres OS
    user must be able to reach it when the tests run as root)."""
    state = Path(tempfile.mkdtemp(prefix="todo-stack-lifecycle-"))
    state.chmod(0o755)
    monkeypatch.setenv("TODO_STACK_DIR", str(state))
    monkeypatch.delenv("TODO_TEST_DATABASE_URL", raising=False)
    monkeypatch.delenv("TODO_KAFKA_BROKERS", raising=False)
    ports = {var: free_port() for var in PORT_VARS}
    for var, port in ports.items():
        monkeypatch.setenv(var, str(port))
    try:
        yield ports
    finally:
        main(["down"])
        shutil.rmtree(state, ignore_errors=True)


def _status(capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, Any]]:
    capsys.readouterr()
    assert main(["status", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["components"]
    return {row["name"]: row for row in rows}


def _processes_mentioning(text: str) -> list[int]:
    """Pids whose command line mentions ``text`` (inspection only, nothing is signalled)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if text.encode() in cmdline and pid_alive(int(entry)):
            found.append(int(entry))
    return found


def test_up_twice_is_harmless_and_down_leaves_nothing(
    private_stack_env: dict[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["up"]) == 0
    first = _status(capsys)
    assert set(first) == {"postgres", "kafka", "scheduler", "jaeger", "daprd"}
    for name in MANAGED:
        assert first[name]["healthy"], first[name]
        assert first[name]["pid"] is not None
    assert first["daprd"]["pid"] is None and first["daprd"]["healthy"]
    assert first["postgres"]["port"] == private_stack_env["TODO_STACK_PG_PORT"]

    assert main(["up"]) == 0  # again: nothing restarts
    out = capsys.readouterr().out
    assert "already running" in out
    second = _status(capsys)
    assert {n: r["pid"] for n, r in second.items()} == {n: r["pid"] for n, r in first.items()}

    state = os.environ["TODO_STACK_DIR"]
    pids = [first[name]["pid"] for name in MANAGED]
    assert main(["down"]) == 0
    assert not [pid for pid in pids if pid_alive(pid)]
    assert _processes_mentioning(state) == []
    assert not [p for p in private_stack_env.values() if port_open(p)]
    after = _status(capsys)
    assert all(after[n]["pid"] is None and not after[n]["healthy"] for n in MANAGED)

    assert main(["down"]) == 0  # down twice is harmless too


def test_isolated_stack_runs_beside_the_shared_one(isolated_stack: Any, stack: Any) -> None:
    mine = {s.name: s for s in isolated_stack.statuses()}
    shared = {s.name: s for s in stack.statuses()}
    for name in MANAGED:
        assert mine[name].healthy, mine[name]
        assert mine[name].pid is not None and mine[name].pid != shared[name].pid
        assert mine[name].port != shared[name].port


def test_kafka_storage_formats_with_a_cluster_id_that_starts_with_a_dash() -> None:
    """One id in 64 starts with ``-``; passed as its own argument, the storage tool took it for
    an option and a CI run failed ("argument --cluster-id/-t: expected one argument")."""
    state = Path(tempfile.mkdtemp(prefix="todo-kafka-format-"))
    try:
        kafka = Kafka(StackConfig(state_dir=state))
        kafka.write_config()
        kafka.format_storage(ensure_libs(kafka.cfg, progress=False), "-AbCdEfGhIjKlMnOpQrStUv")
        meta = (kafka.data / "meta.properties").read_text()
        assert "cluster.id=-AbCdEfGhIjKlMnOpQrStUv" in meta.splitlines()
    finally:
        shutil.rmtree(state, ignore_errors=True)


def test_generated_kafka_cluster_ids_never_start_with_a_dash() -> None:
    ids = {_cluster_id() for _ in range(5000)}
    assert len(ids) == 5000
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(i) == 22 for i in ids)
