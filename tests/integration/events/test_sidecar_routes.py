"""The Dapr-only routes on the real stack, in development without ``APP_API_TOKEN``: daprd (on
loopback) still delivers, while a caller on another address cannot forge an event or a job."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import httpx
import pytest
import websockets

from auth.tokens import JwtVerifier
from tests.integration.events.support import JWT_SECRET, AppIds, RoleLauncher

pytestmark = pytest.mark.integration


def an_address_that_is_not_loopback() -> str:
    """This machine's address on its outgoing interface (a UDP connect sends no packet)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError as exc:
            pytest.fail(f"this test needs a non-loopback IPv4 interface to call the app from: {exc}")
        address: str = probe.getsockname()[0]
    assert not address.startswith("127."), "no non-loopback IPv4 address to call the app from"
    return address


def forged_update(user: str) -> dict[str, Any]:
    return {
        "specversion": "1.0", "id": "999999999", "source": "attacker", "type": "todo.task.updated.v1",
        "topic": "task-updates", "datacontenttype": "application/json",
        "data": {"user_id": user, "task_id": 1, "event_type": "updated", "task_data": {"title": "forged"},
                 "changes": {}, "timestamp": "2030-01-01T00:00:00Z"},
    }  # fmt: skip


async def next_task_message(ws: Any, limit: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + limit
    while (left := deadline - time.monotonic()) > 0:
        try:
            message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), left))
        except TimeoutError:
            return None
        if message.get("type") == "task":
            return message
    return None


async def test_without_an_app_token_only_the_local_sidecar_reaches_the_event_and_job_routes(
    role_launcher: RoleLauncher, event_app_ids: AppIds, session_id: str
) -> None:
    api = role_launcher.start("api", event_app_ids.api, app_token=None, host="0.0.0.0")
    user = f"sidecar-{session_id}"
    token = JwtVerifier(secret=JWT_SECRET).issue(user, ttl=600)
    # Another machine, naming the app as daprd does: only the peer address tells them apart.
    outside = httpx.AsyncClient(
        base_url=f"http://{an_address_that_is_not_loopback()}:{api.port}",
        headers={"host": f"127.0.0.1:{api.port}"}, timeout=10,
    )  # fmt: skip
    async with (
        websockets.connect(f"ws://127.0.0.1:{api.port}/ws?token={token}") as ws,
        httpx.AsyncClient(base_url=api.url, headers={"authorization": f"Bearer {token}"}, timeout=30) as http,
        outside,
    ):
        assert json.loads(await ws.recv())["type"] == "hello"
        update = None  # daprd's broadcast subscription starts at the newest offset once it joined
        for _ in range(20):
            await http.post("/api/tasks", json={"title": "through daprd"})
            if (update := await next_task_message(ws, 3)) is not None:
                break
        assert update is not None and update["task"]["title"] == "through daprd"

        forged = await outside.post("/events/task-updates", json=forged_update(user))
        assert forged.status_code == 401, forged.text
        job = await outside.post("/job/reminder-task-1", json={})
        assert job.status_code == 401, job.text
        assert await outside.get("/healthz")  # the app does answer that address

        await http.post("/api/tasks", json={"title": "after the forgery"})
        seen = []
        while (message := await next_task_message(ws, 5)) is not None:
            seen.append(message["task"]["title"])
            if seen[-1] == "after the forgery":
                break
        assert "forged" not in seen and seen[-1] == "after the forgery", seen
