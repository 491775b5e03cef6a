"""What the chosen stack costs with no business logic: the floor under the chat and events targets.

    python -m benchmarks.floor --calls 2000

Each part runs the real library the product uses, with the work it does for us replaced by
nothing, and reports CPU milliseconds per operation (the machine has two CPUs shared by every
process, so CPU per operation bounds both latency and throughput):

- ``mcp_server``: the MCP SDK's streamable HTTP server (stateless, JSON responses, as ``/mcp``
  is served) under uvicorn, answering ``tools/call`` of a tool that returns a constant. The
  calls come from the events benchmark's lean wire client; the server thread's CPU per call is
  the least the api spends per MCP create before touching the database.
- ``mcp_client``: the same calls from the agent's client, the agents SDK's
  ``MCPServerStreamableHttp`` configured as a chat turn's (one connection per turn, protocol
  version pinned after the first probe): its CPU per connect + call + close, on top of the
  server's.
- ``fastapi``: a FastAPI ``POST`` taking and returning a small pydantic model (what
  ``/api/chat`` is, without the chat): server CPU per request.
- ``agent_run``: ``Runner.run_streamed`` with the offline model and a local tool that returns a
  constant: a turn that calls one tool and answers from its result (one model step, as the
  chat runs the offline model), CPU per run.

The last line is one JSON object with those figures, the chat-turn floor (one FastAPI request,
one agent run, one MCP connect + call on both sides) and the MCP creates per second that one
CPU could serve at the server figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
from agents import Agent, RunConfig, Runner, function_tool
from fastapi import FastAPI
from mcp.server import MCPServer
from pydantic import BaseModel

from agent.assistant import instructions
from agent.chat import _Borrowed, _http_streams, _Protocol, _TaskTools
from agent.offline.model import OfflineModel
from benchmarks.events_e2e import WireMcpSession
from devstack.appserver import serve_in_thread
from tasks.clock import utc_now


def thread_cpu(name_prefix: str) -> float:
    """CPU seconds so far of this process's threads whose name starts with ``name_prefix``."""
    ids = {t.native_id for t in threading.enumerate() if t.name.startswith(name_prefix)}
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for task in Path("/proc/self/task").iterdir():
        if int(task.name) in ids:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


@contextmanager
def serving(app: Any) -> Iterator[str]:
    server = serve_in_thread(app)
    try:
        yield server.url
    finally:
        server.stop()


def mcp_app() -> Any:
    server = MCPServer(name="floor")

    @server.tool(structured_output=True)
    def add_task(title: str, due: str | None = None, priority: str | None = None) -> dict[str, Any]:
        """Pretend to add a task."""
        return {"id": 1, "title": title, "due_at": due, "priority": priority or "none", "completed": False}

    app = server.streamable_http_app(streamable_http_path="/mcp", stateless_http=True, json_response=True)
    return app


def timed(run: Callable[[], Any], count: int, server_thread: str | None) -> dict[str, float]:
    """Run ``count`` operations after a warm-up; CPU ms per operation for this (client) thread
    and for the server thread, and the wall-clock p50."""
    for _ in range(max(20, count // 20)):
        run()
    latencies: list[float] = []
    server_started = thread_cpu(server_thread) if server_thread else 0.0
    client_started = time.thread_time()
    for _ in range(count):
        started = time.perf_counter()
        run()
        latencies.append((time.perf_counter() - started) * 1000)
    client = (time.thread_time() - client_started) * 1000 / count
    server = ((thread_cpu(server_thread) - server_started) * 1000 / count) if server_thread else 0.0
    return {"client_cpu_ms": round(client, 3), "server_cpu_ms": round(server, 3),
            "p50_ms": round(statistics.median(latencies), 3)}  # fmt: skip


def measure_mcp(count: int) -> tuple[dict[str, float], dict[str, float]]:
    with serving(mcp_app()) as url:
        thread = f"uvicorn-{url.rsplit(':', 1)[1]}"
        loop = asyncio.new_event_loop()
        try:
            wire = loop.run_until_complete(WireMcpSession(url, None).__aenter__())
            arguments = {"title": "Water the plants", "due": "2026-11-28T17:00:00Z"}
            lean = timed(
                lambda: loop.run_until_complete(wire.call_tool("add_task", arguments)), count, thread
            )
            loop.run_until_complete(wire.__aexit__(None, None, None))

            protocol, tools = _Protocol(), list[Any]()
            pool = httpx2.AsyncHTTPTransport()  # the chat's keep-alive pool to its own /mcp

            def client(headers: Any = None, timeout: Any = None, auth: Any = None) -> httpx2.AsyncClient:
                return httpx2.AsyncClient(
                    headers=headers, timeout=timeout, auth=auth, transport=_Borrowed(pool)
                )

            async def agent_turn() -> None:  # a chat turn's MCP use: connect, one call, close
                server = _TaskTools(  # configured as a chat turn's connection (agent/chat.py)
                    lambda: _http_streams(f"{url}/mcp", client(timeout=30)),
                    shared_tools=tools,
                    protocol=protocol,
                )
                await server.connect()
                try:
                    await server.call_tool("add_task", arguments)
                finally:
                    await server.cleanup()

            sdk = timed(lambda: loop.run_until_complete(agent_turn()), max(1, count // 4), thread)
        finally:
            loop.close()
    return lean, sdk


class Message(BaseModel):
    message: str
    conversation_id: str | None = None


class Reply(BaseModel):
    conversation_id: str
    reply: str
    tool_calls: list[dict[str, Any]]


def measure_fastapi(count: int) -> dict[str, float]:
    app = FastAPI()

    @app.post("/api/chat")
    async def chat(body: Message) -> Reply:
        return Reply(conversation_id=body.conversation_id or "c1", reply=body.message, tool_calls=[])

    with serving(app) as url, httpx.Client(base_url=url) as client:
        thread = f"uvicorn-{url.rsplit(':', 1)[1]}"
        body = {"message": "add water the plants tomorrow 5pm", "conversation_id": "c1"}
        return timed(lambda: client.post("/api/chat", json=body).raise_for_status(), count, thread)


def measure_agent_run(count: int) -> dict[str, float]:
    @function_tool
    def add_task(title: str, due: str | None = None, priority: str | None = None) -> str:
        """Add a task."""
        return json.dumps({"task": {"id": 7, "title": title, "due_at": "2026-11-28T17:00:00+00:00",
                                    "priority": "high", "tags": [], "completed": False}})  # fmt: skip

    async def run() -> None:
        model = OfflineModel()
        agent = Agent(
            name="todo-assistant", instructions=instructions(now=utc_now(), timezone="UTC"),
            model=model, tools=[add_task], tool_use_behavior=model.answer_from_tools,
        )  # fmt: skip
        result = Runner.run_streamed(
            agent,
            "add water the plants tomorrow 5pm high priority",
            run_config=RunConfig(tracing_disabled=True),
        )
        async for _event in result.stream_events():
            pass
        assert str(result.final_output).startswith("Added"), result.final_output

    loop = asyncio.new_event_loop()
    try:
        return timed(lambda: loop.run_until_complete(run()), count, None)
    finally:
        loop.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.floor", description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args(argv)
    lean, sdk = measure_mcp(args.calls)
    web = measure_fastapi(args.calls)
    run = measure_agent_run(max(1, args.calls // 4))
    print(f"MCP tools/call, lean client:   server {lean['server_cpu_ms']:.3f} ms CPU, client "
          f"{lean['client_cpu_ms']:.3f}, p50 {lean['p50_ms']:.3f} ms", file=sys.stderr)  # fmt: skip
    print(f"MCP connect+call, agents SDK:  server {sdk['server_cpu_ms']:.3f} ms CPU, client "
          f"{sdk['client_cpu_ms']:.3f}, p50 {sdk['p50_ms']:.3f} ms", file=sys.stderr)  # fmt: skip
    print(f"FastAPI POST:                  server {web['server_cpu_ms']:.3f} ms CPU, "
          f"p50 {web['p50_ms']:.3f} ms", file=sys.stderr)  # fmt: skip
    print(f"agent run (1 step, 1 tool):    {run['client_cpu_ms']:.3f} ms CPU", file=sys.stderr)
    chat_floor = web["server_cpu_ms"] + run["client_cpu_ms"] + sdk["client_cpu_ms"] + sdk["server_cpu_ms"]
    line = {
        "mcp_server_cpu_ms": lean["server_cpu_ms"],
        "mcp_lean_client_cpu_ms": lean["client_cpu_ms"],
        "mcp_agent_client_cpu_ms": sdk["client_cpu_ms"],
        "mcp_agent_server_cpu_ms": sdk["server_cpu_ms"],
        "fastapi_server_cpu_ms": web["server_cpu_ms"],
        "agent_run_cpu_ms": run["client_cpu_ms"],
        "chat_turn_floor_cpu_ms": round(chat_floor, 3),
        "mcp_calls_per_cpu_s": round(1000 / lean["server_cpu_ms"]) if lean["server_cpu_ms"] else None,
    }
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
