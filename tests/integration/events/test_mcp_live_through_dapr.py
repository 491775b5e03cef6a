"""MCP subscriptions on the real path: a REST write on the api role commits an outbox row, the
relay publishes it through daprd to Kafka's task-updates topic, daprd delivers it back to the
api role, and the same delivery that feeds the WebSocket hub reaches an MCP listen stream."""

from __future__ import annotations

import time

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.integration.events.support import EventSystem
from tests.integration.mcp.support import resource_text, updated_uri


async def test_a_rest_write_reaches_an_mcp_listen_stream_through_kafka(
    event_system: EventSystem, session_id: str
) -> None:
    system, alice = event_system, f"alice-{session_id}"
    await anyio.to_thread.run_sync(system.wait_for_live_updates)
    headers = {"Authorization": f"Bearer {system.token(alice)}"}
    transport = streamable_http_client(
        f"{system.api.url}/mcp", http_client=httpx2.AsyncClient(headers=headers, timeout=30)
    )
    async with system.http(alice) as http, Client(transport) as client:
        task = (await http.post("/api/tasks", json={"title": "Through Kafka"})).json()
        uri = f"todo://tasks/{task['id']}"
        async with client.listen(resource_subscriptions=[uri]) as stream:
            sent = time.perf_counter()
            changed = await http.patch(f"/api/tasks/{task['id']}", json={"priority": "high"})
            assert changed.status_code == 200, changed.text
            with anyio.fail_after(30):
                event = await stream.__anext__()
            latency = time.perf_counter() - sent
        reread = await client.read_resource(uri)
    print(f"\nREST write -> Kafka -> MCP listen stream: {latency * 1000:.0f} ms")
    assert updated_uri(event) == uri and '"priority":"high"' in resource_text(reread)
