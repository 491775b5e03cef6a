"""How long a REST write takes to reach an MCP client's subscription (embedded role, loopback).

    .venv/bin/python -m benchmarks.mcp_live --writes 200     # last line JSON

Serves the ``api`` role on SQLite with HS256 sign-in (in-process event bus, as the embedded
default), opens a ``subscriptions/listen`` stream (protocol 2026-07-28) and a handshake-era
session subscription on one task with the official MCP client, then PATCHes that task over REST
``--writes`` times, one at a time, and times each write's HTTP request start to the notification
(after 10 warm-up writes). Figures in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import httpx2
import mcp_types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mcp_server.auth import JwtVerifier
from tasks.inputs import TaskDraft
from tasks.service import Actor
from todo_agent.api import app_for
from todo_agent.bootstrap import bootstrap
from todo_agent.local_server import free_port, serve_in_thread
from todo_agent.settings import Settings

SECRET = "benchmark-secret-that-is-long-enough-for-hs256-0123456789"
WARM_UP = 10


def _client(url: str, token: str, **kwargs: Any) -> Client:
    headers = {"Authorization": f"Bearer {token}"}
    transport = streamable_http_client(
        f"{url}/mcp", http_client=httpx2.AsyncClient(headers=headers, timeout=30)
    )
    return Client(transport, **kwargs)


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50": round(statistics.median(ordered) * 1000, 1),
        "p95": round(ordered[int(len(ordered) * 0.95) - 1] * 1000, 1),
        "max": round(ordered[-1] * 1000, 1),
    }


async def measure(url: str, token: str, task_id: int, writes: int) -> dict[str, Any]:
    uri = f"todo://tasks/{task_id}"
    session_heard = asyncio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, mcp_types.ResourceUpdatedNotification):
            session_heard.set()

    listen_ms: list[float] = []
    session_ms: list[float] = []
    async with (
        _client(url, token) as modern,
        _client(url, token, mode="legacy", message_handler=on_message) as legacy,
        httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as rest,
    ):
        await legacy.session.subscribe_resource(uri)
        async with modern.listen(resource_subscriptions=[uri]) as stream:
            await asyncio.sleep(0.3)  # the session's GET stream opens after its handshake
            for n in range(writes + WARM_UP):
                session_heard.clear()
                sent = time.perf_counter()
                reply = await rest.patch(f"/api/tasks/{task_id}", json={"title": f"write {n}"})
                reply.raise_for_status()
                await asyncio.wait_for(stream.__anext__(), 10)
                listened = time.perf_counter() - sent
                await asyncio.wait_for(session_heard.wait(), 10)
                heard = time.perf_counter() - sent
                if n >= WARM_UP:
                    listen_ms.append(listened)
                    session_ms.append(heard)
    return {"listen_stream_ms": _summary(listen_ms), "session_ms": _summary(session_ms), "writes": writes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        port = free_port()
        settings = Settings(
            database_url=f"sqlite:///{Path(folder) / 'bench.db'}", jwt_secret=SECRET,  # type: ignore[arg-type]
            public_url=f"http://127.0.0.1:{port}", log_level="WARNING",
        )  # fmt: skip
        container = bootstrap("api", settings)
        server = serve_in_thread(app_for(container), port)
        try:
            task = container.tasks.add(Actor("bench"), TaskDraft(title="watched"))
            token = JwtVerifier(secret=SECRET).issue("bench", ttl=3600)
            result = asyncio.run(measure(server.url, token, task.id, args.writes))
        finally:
            server.stop()
            container.engine.dispose()
    print(f"REST write -> listen stream: {result['listen_stream_ms']} ms")
    print(f"REST write -> session notification: {result['session_ms']} ms")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
