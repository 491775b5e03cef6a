"""``python -m devstack serve ROLE`` (what ``todo-agent serve ROLE --dapr`` was): the role with a
daprd of its own beside it, wired to the local stack; stopping the role stops its daprd."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import urllib.request
from pathlib import Path

import pytest

from devstack.config import repo_root
from devstack.procs import free_port, http_status, pid_alive, spawn, stop_pid, wait_until
from devstack.stack import Stack

pytestmark = pytest.mark.integration


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def daprd_beside(pid: int) -> tuple[int, dict[str, str]]:
    """The daprd child of ``pid`` and its ``--flag value`` pairs."""
    for child in children(pid):
        argv = Path(f"/proc/{child}/cmdline").read_bytes().decode().split("\0")
        if Path(argv[0]).name == "daprd":
            flags = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if re.match(r"--\w", argv[i])}
            return child, flags
    raise AssertionError(f"no daprd among the children {children(pid)} of {pid}")


@pytest.mark.timeout(300)
def test_devstack_serve_runs_the_role_beside_its_own_daprd_and_stops_both(
    stack: Stack, pg_url: str, tmp_path: Path
) -> None:
    port, log = free_port(), tmp_path / "serve.log"
    env = {**os.environ, "TODO_STACK_DIR": str(stack.cfg.state_dir), "TODO_DATABASE_URL": pg_url}
    env["TODO_DATA_DIR"] = str(tmp_path)
    proc = spawn(
        [sys.executable, "-m", "devstack", "serve", "api", "--port", str(port)],
        log_path=log,
        env=env,
        cwd=repo_root(),
    )
    try:
        wait_until(
            lambda: http_status(f"http://127.0.0.1:{port}/healthz") == 200,
            what="python -m devstack serve api",
            timeout=180,
            log_path=log,
            proc=proc,
        )
        daprd, flags = daprd_beside(proc.pid)
        assert flags["--app-id"] == "todo-api" and flags["--app-port"] == str(port)
        metadata_url = f"http://127.0.0.1:{flags['--dapr-http-port']}/v1.0/metadata"
        with urllib.request.urlopen(metadata_url, timeout=10) as response:
            metadata = json.load(response)
        assert metadata["id"] == "todo-api"
        assert {c["name"] for c in metadata["components"]} >= {"kafka-pubsub", "statestore"}
    finally:
        stop_pid(proc.pid, sig=signal.SIGTERM, timeout=30)
    assert not pid_alive(daprd), f"daprd {daprd} outlived its role"
