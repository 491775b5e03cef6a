"""With Dapr, the api's outbox relay runs in a child process: it publishes every write, comes back
when killed without losing a row, and never outlives its app (stopped, or killed outright)."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import httpx
import pytest

from auth.tokens import JwtVerifier
from devstack.procs import wait_until
from tests.integration.events.support import JWT_SECRET, AppIds, RoleLauncher, records_since, scrape
from tests.integration.kafka_support import end_offsets

pytestmark = pytest.mark.integration


def relay_metrics(url: str) -> dict[str, Any]:
    """The outbox backlog and the relay child's state, from the api's ``/metrics``."""
    found = scrape(url)
    pid = found.value("todo_relay_process_pid")
    process = {"alive": found.value("todo_relay_process_up") == 1, "pid": int(pid) if pid else None,
               "restarts": found.value("todo_relay_process_restarts_total")}  # fmt: skip
    return {"backlog": found.value("todo_outbox_backlog"), "process": process}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie has exited: it only waits to be reaped
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_the_relay_process_publishes_comes_back_after_a_kill_and_never_outlives_its_app(
    role_launcher: RoleLauncher, event_app_ids: AppIds, kafka_brokers: str, session_id: str
) -> None:
    api = role_launcher.start("api", event_app_ids.api + "-relay")
    user = f"relay-{session_id}"
    headers = {"authorization": f"Bearer {JwtVerifier(secret=JWT_SECRET).issue(user, ttl=600)}"}
    before = end_offsets(kafka_brokers, "task-events")
    first = relay_metrics(api.url)["process"]
    assert first["restarts"] == 0 and first["alive"] and pid_alive(first["pid"])

    with httpx.Client(base_url=api.url, headers=headers, timeout=30) as http:

        def write(n: int) -> list[str]:
            return [
                str(http.post("/api/tasks", json={"title": f"relay {n} {i}"}).json()["id"]) for i in range(n)
            ]

        ids = write(20)
        wait_until(
            lambda: relay_metrics(api.url)["backlog"] == 0, what="the first writes published", timeout=30
        )
        os.kill(first["pid"], signal.SIGKILL)
        wait_until(lambda: not pid_alive(first["pid"]), what="the relay process to die", timeout=10)
        down = relay_metrics(api.url)  # still answers while the relay is down: the database's view
        assert down["process"]["alive"] is False or down["process"]["restarts"] == 1
        ids += write(20)  # committed while no relay runs: they wait in the outbox
        wait_until(lambda: relay_metrics(api.url)["process"]["restarts"] == 1, what="a new relay", timeout=30)
        wait_until(lambda: relay_metrics(api.url)["backlog"] == 0, what="the backlog published", timeout=30)
        second = relay_metrics(api.url)["process"]
        assert second["pid"] != first["pid"] and pid_alive(second["pid"])

    records = records_since(kafka_brokers, before, lambda e: e.get("data", {}).get("user_id") == user,
                            expected=40)  # fmt: skip
    assert {e["data"]["task_id"] for _, e in records} == {int(i) for i in ids}

    # A SIGTERM to the process group reaches the relay as well as the app: the relay leaves its
    # stopping to the app (else the app's supervisor would start it again on the way out).
    os.kill(second["pid"], signal.SIGTERM)
    time.sleep(1.5)  # a relay that stopped on it would be dead (and restarted) by now
    assert pid_alive(second["pid"]) and relay_metrics(api.url)["process"]["restarts"] == 1
    api.stop_app()  # SIGTERM to the process group: the app stops its relay on the way out
    wait_until(lambda: not pid_alive(second["pid"]), what="the relay to stop with its app", timeout=20)
    restarted = api.log_path.read_text().count("outbox relay process exited")
    assert restarted == 1, "only the SIGKILL above: the group's SIGTERM must not look like a crash"

    api.start_app()
    third = relay_metrics(api.url)["process"]
    assert api.proc is not None
    os.kill(api.proc.pid, signal.SIGKILL)  # no goodbye: the relay sees its pipe close
    api.proc.wait(10)
    wait_until(lambda: not pid_alive(third["pid"]), what="the orphaned relay to exit", timeout=20)
