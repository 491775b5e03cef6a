"""The api under change: its pod deleted while 1,000 writes run, then two replicas that each
serve WebSocket clients. Runs last (files run in name order): it restarts and rescales the api."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections import Counter

import httpx
import pytest

from tests.cluster.support import Deployed, eventually, tab
from tests.websocket_tab import Tab

pytestmark = pytest.mark.cluster

WRITES = 1000
WORKERS = 4


async def write_once(http: httpx.AsyncClient, title: str, stats: Counter[str]) -> None:
    """POST a task until it is known to exist exactly once.

    The API has no idempotency key, so a write is retried blindly only when it never reached a
    server (connection refused); after any other failure the client first looks whether it was
    applied. A task applied twice would still show up in the final count."""
    while True:
        try:
            response = await http.post("/api/tasks", json={"title": title})
            if response.status_code == 201:
                return
            stats[f"http {response.status_code}"] += 1
        except httpx.ConnectError:
            stats["refused"] += 1
            await asyncio.sleep(0.2)
            continue
        except httpx.HTTPError as exc:
            stats[type(exc).__name__] += 1
        await asyncio.sleep(0.2)
        with contextlib.suppress(httpx.HTTPError):
            found = await http.get("/api/tasks", params={"search": title, "status": "all"})
            if found.status_code == 200 and found.json()["items"]:
                stats["applied before the failure"] += 1
                return


async def test_deleting_the_api_pod_during_1000_writes_loses_none_and_applies_none_twice(
    deployed: Deployed,
) -> None:
    owner = f"writer-{uuid.uuid4().hex[:8]}"
    titles = [f"write {i:04d} {owner}" for i in range(WRITES)]
    stats: Counter[str] = Counter()
    queue: asyncio.Queue[str] = asyncio.Queue()
    for t in titles:
        queue.put_nowait(t)
    victim = deployed.ready_pods("todo-api")[0]["metadata"]["name"]

    busy = asyncio.Event()

    async def worker(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            await write_once(http, queue.get_nowait(), stats)
            if queue.qsize() <= WRITES * 3 // 4:
                busy.set()

    async def delete_when_busy() -> None:
        await busy.wait()
        await asyncio.to_thread(deployed.kubectl, "delete", "pod", victim, "--wait=false")

    started = asyncio.get_running_loop().time()
    async with deployed.http(owner) as http:
        http.timeout = httpx.Timeout(60)
        await asyncio.gather(delete_when_busy(), *(worker(http) for _ in range(WORKERS)))
    took = asyncio.get_running_loop().time() - started
    print(f"{WRITES} writes in {took:.0f} s across the pod deletion; failures seen: {dict(stats)}")

    rows = deployed.rows("select title from tasks where owner_id = :o", o=owner)
    counts = Counter(r.title for r in rows)
    assert sorted(counts) == sorted(titles), f"lost: {len(set(titles) - set(counts))}"
    assert [t for t, n in counts.items() if n > 1] == []
    assert victim not in [p["metadata"]["name"] for p in deployed.pods("todo-api")]


async def test_two_api_replicas_each_push_every_update_once_to_their_websocket_clients(
    deployed: Deployed,
) -> None:
    deployed.kubectl("patch", "hpa", "todo-api", "--type=merge", "-p", '{"spec":{"minReplicas":2}}')
    try:
        await eventually(
            lambda: len(deployed.ready_pods("todo-api")) == 2, "two ready api replicas", limit=300
        )
        pods = deployed.ready_pods("todo-api")
        owner = f"tabs-{uuid.uuid4().hex[:8]}"
        names = [p["metadata"]["name"] for p in pods]
        with deployed.forwarded(names[0]) as url_0, deployed.forwarded(names[1]) as url_1:
            async with (
                tab(deployed.ws_url(owner, url_0)) as first,
                tab(deployed.ws_url(owner, url_1)) as second,
            ):
                await asyncio.sleep(3)  # each replica's broadcast consumer joins at the newest offset
                async with deployed.http(owner) as http:
                    ids = []
                    for i in range(10):
                        created = await http.post("/api/tasks", json={"title": f"update {i}"})
                        assert created.status_code == 201, created.text
                        ids.append(created.json()["id"])
                for window in (first, second):
                    await eventually(functools.partial(_has_updates, window, 10), "ten updates", limit=60)
                await asyncio.sleep(3)  # a duplicate would arrive by now
        for window in (first, second):
            assert sorted(m["task_id"] for m in window.of_type("task")) == sorted(ids)
    finally:
        # No metrics-server here, so the autoscaler never scales down by itself.
        deployed.kubectl("patch", "hpa", "todo-api", "--type=merge", "-p", '{"spec":{"minReplicas":1}}')
        deployed.kubectl("scale", "deployment", "todo-api", "--replicas=1")


def _has_updates(window: Tab, count: int) -> bool:
    return len(window.of_type("task")) >= count
