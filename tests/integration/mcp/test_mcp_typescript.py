"""The official MCP TypeScript SDK (1.32, a handshake-era client) against ``/mcp`` over streamable
HTTP with a session: instructions, resources, a prompt, a completion, a subscription that hears a
REST write, a delete that is asked about and cancelled, and (a client that cannot be asked) the
refused delete as an error result with the confirmation in its ``_meta``, which the SDK's checks
of structured results let through. ``ts_client/client.mjs`` is the client; ``npm ci`` installs
the pinned SDK on first use (``ts_client/package-lock.json``)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tasks.inputs import TaskDraft
from tasks.service import Actor
from tests.conftest import JWT_SECRET
from todo_agent.api import app_for
from todo_agent.bootstrap import bootstrap
from todo_agent.local_server import free_port

pytestmark = pytest.mark.integration

CLIENT = Path(__file__).parent / "ts_client"


@pytest.fixture(scope="module")
def node_client() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        raise RuntimeError("Node.js 18+ and npm are needed: apt-get install -y nodejs npm")
    if not (CLIENT / "node_modules" / "@modelcontextprotocol" / "sdk").exists():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=CLIENT, check=True, timeout=600)
    return CLIENT / "client.mjs"


def test_the_typescript_sdk_uses_a_session_subscribes_and_is_asked_before_a_delete(
    node_client: Path, make_settings, app_server_factory, verifier
) -> None:
    port = free_port()
    container = bootstrap("api", make_settings(jwt_secret=JWT_SECRET, public_url=f"http://127.0.0.1:{port}"))
    server = app_server_factory(app_for(container), port)
    task = container.tasks.add(
        Actor("alice", timezone="Europe/Berlin"), TaskDraft(title="From TypeScript", due="today 22:00")
    )
    token = verifier.issue("alice")
    node = subprocess.Popen(
        ["node", str(node_client), server.url, token, str(task.id)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert node.stdin is not None and node.stdout is not None
    steps: dict[str, Any] = {}
    try:
        for line in node.stdout:
            step = json.loads(line)
            steps[step["step"]] = step["value"]
            if step["step"] == "subscribed":
                changed = httpx.patch(
                    f"{server.url}/api/tasks/{task.id}", json={"priority": "high"},
                    headers={"Authorization": f"Bearer {token}"}, timeout=10,
                )  # fmt: skip
                assert changed.status_code == 200, changed.text
                node.stdin.write("go\n")
                node.stdin.close()
        assert node.wait(timeout=60) == 0, node.stderr.read() if node.stderr else ""
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()
    uri = f"todo://tasks/{task.id}"
    assert steps["capabilities"]["resources"]["subscribe"] is True and "prompts" in steps["capabilities"]
    assert "confirm: true" in steps["instructions"]
    assert steps["resources"] == ["todo://today", uri] and steps["read"] == "From TypeScript"
    assert "From TypeScript" in steps["prompt"] and steps["completion"] == [str(task.id)]
    assert steps["updated"] == uri
    delete = steps["delete"]
    assert delete["isError"] and "Nothing was deleted" in delete["text"] and len(delete["asked"]) == 1
    refused = steps["refused"]
    assert refused["isError"] and "needs the user's yes" in refused["text"] and refused["blocks"] == 2
    assert refused["confirmation"] == {
        "tool": "delete_task",
        "arguments": {"task_id": task.id, "confirm": True},
        "question": f"Delete task #{task.id} 'From TypeScript' and its subtasks?",
        "count": 1,
        "title": "From TypeScript",
    }
    assert container.tasks.get(Actor("alice"), task.id).priority == "high"  # still there
