"""Task created over MCP (streamable HTTP) -> outbox -> relay -> daprd -> Kafka -> daprd -> the api's
WebSocket hub -> the owner's socket: latency, write throughput, relay lag, losses, memory.

    python -m benchmarks.events_e2e --rate 100 --seconds 30            # Dapr, then embedded
    python -m benchmarks.events_e2e --rate 500 --seconds 60 --mode dapr
    python -m benchmarks.events_e2e --rate 100 --seconds 30 --via rest   # without the MCP leg

Dapr mode brings up PostgreSQL, Kafka and the scheduler itself (what it started stops at the
end), makes a fresh database, and runs ``todo-agent serve api`` as its own process beside its
own daprd (the api's relay publishes; its task-updates subscription uses the per-replica
broadcast component). Embedded mode runs ``todo-agent run`` (SQLite, in-process bus).

The load: ``--rate`` creates per second for ``--seconds``, spread over ``--users`` users, each
with one MCP session and one WebSocket. Latency is from just before the MCP ``add_task`` call
to the ``created`` message on the owner's socket. ``lost`` counts created tasks whose message
never arrived (waiting up to ``--drain`` seconds). ``relay_lag_ms`` is the relay's p50 time
from commit (outbox ``created_at``) to marked sent, and ``relay_round_ms`` its rounds' phases,
both estimated from the histograms of the api's ``GET /metrics`` (``todo_relay_lag_seconds``,
``todo_relay_round_phase_seconds``) over the run. RSS is read from /proc at the end.
The MCP calls go through a lean client that speaks the streamable HTTP wire format on aiohttp
(``WireMcpSession``, ~0.7 ms of CPU per call against ~2.9 ms for the SDK client, which shares the
two CPUs with the system under test); ``--client sdk`` uses the SDK's ``mcp.Client`` instead.
The last line is one JSON object (Dapr mode when it ran; with the embedded/dapr ratio).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import httpx2
import websockets
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import LATEST_PROTOCOL_VERSION

from benchmarks.stack import stack_with_fresh_database
from devstack.procs import free_port, http_status, spawn, stop_pid, wait_until
from events.relay import new_event_loop
from observability.scrape import Scrape

JWT_SECRET = "benchmark-secret-that-is-long-enough-0123456789abcdef"
APP_TOKEN = "benchmark-app-token"
TODO_AGENT = str(Path(sys.executable).with_name("todo-agent"))
SESSIONS = 8  # MCP sessions the load is spread over (round robin; users share them)
IN_FLIGHT = 8  # requests in flight per session at most


@dataclass
class Target:
    url: str
    api_pid: int
    daprd_pid: int | None
    tokens: dict[str, str | None]
    database_url: str | None = None  # Dapr mode: read commit and publish times for the stage split


@dataclass
class Measurements:
    sent_at: dict[int, float] = field(default_factory=dict)
    seen_at: dict[int, float] = field(default_factory=dict)
    sent_wall: dict[int, float] = field(default_factory=dict)  # time.time() twins, for the outbox
    seen_wall: dict[int, float] = field(default_factory=dict)
    failures: int = 0
    write_seconds: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)
    relay_pid: int | None = None  # Dapr mode: the api's relay runs in a child process
    scrape_before: Scrape | None = None  # the api's /metrics as the measured writes start
    reconnects: int = 0  # sockets the server dropped for falling behind, resumed after their last id
    resets: int = 0  # resumes that missed more than the server replays


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def scrape(url: str) -> Scrape:
    """The app's ``GET /metrics``, read back."""
    reply = httpx.get(f"{url}/metrics", timeout=30)
    reply.raise_for_status()
    return Scrape.of(reply.text)


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process so far (0 when it is not there)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time the whole machine spent busy so far, all CPUs (``/proc/stat``: everything but
    idle and iowait), so a run's figure per write counts every process, PostgreSQL and Kafka too."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:9]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields)
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def named_cpu_seconds(name: str, *, cmdline_has: str = "") -> float:
    """CPU time so far of every process called ``name`` (``comm``), e.g. all of PostgreSQL's."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "comm").read_text().strip() != name:
                continue
            if cmdline_has and cmdline_has not in (proc / "cmdline").read_text(errors="replace"):
                continue
            total += cpu_seconds(int(proc.name))
        except OSError:
            continue
    return total


def system_cpu() -> dict[str, float]:
    return {"machine": machine_busy_seconds(), "postgres": named_cpu_seconds("postgres"),
            "kafka": named_cpu_seconds("java", cmdline_has="kafka")}  # fmt: skip


def rss_mb(pid: int | None, field_name: str = "VmRSS") -> float | None:
    if pid is None:
        return None
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    return None


# -- the systems under test ----------------------------------------------------------------
def _start_app(args: list[str], env: dict[str, str], url: str, log: Path) -> Any:
    proc = spawn(args, log_path=log, env={**os.environ, **env})
    wait_until(
        lambda: http_status(f"{url}/healthz") == 200, what="the app", timeout=90, log_path=log, proc=proc
    )
    return proc


@contextmanager
def embedded(users: int, folder: Path) -> Iterator[Target]:
    port = free_port()
    env = {"TODO_DATA_DIR": str(folder), "TODO_DATABASE_URL": f"sqlite:///{folder}/todo.db",
           "TODO_LOG_LEVEL": "WARNING", "TODO_TIMEZONE": "UTC"}  # fmt: skip
    for name in ("TODO_JWT_SECRET", "TODO_JWKS_URL", "DAPR_HTTP_PORT", "DAPR_GRPC_PORT"):
        os.environ.pop(name, None)
    proc = _start_app([TODO_AGENT, "run", "--port", str(port)], env, f"http://127.0.0.1:{port}",
                      folder / "embedded.log")  # fmt: skip
    try:
        yield Target(url=f"http://127.0.0.1:{port}", api_pid=proc.pid, daprd_pid=None, tokens={"local": None})
    finally:
        stop_pid(proc.pid, timeout=10)


@contextmanager
def dapr(users: int, folder: Path) -> Iterator[Target]:

    from auth.tokens import JwtVerifier
    from devstack.components import render, subscriptions_for
    from devstack.sidecar import start_sidecar
    from tasks.db import make_engine, migrate

    with ExitStack() as exits:
        stack, pg_url = stack_with_fresh_database(exits)
        engine = make_engine(pg_url)
        migrate(engine)
        engine.dispose()
        app_id = f"todo-api-bench{secrets.token_hex(3)}"
        broadcast = (
            Path(__file__).parents[1] / "dapr-components" / "kafka-pubsub-broadcast.yaml"
        ).read_text()
        resources = render(
            folder / "resources", kafka_brokers=stack.cfg.kafka_brokers, pg_url=pg_url, subscriptions=False,
            extra={"subscriptions.yaml": subscriptions_for({"todo-api": app_id}),
                   "kafka-pubsub-broadcast.yaml": broadcast.replace("  - todo-api", f"  - {app_id}").replace(
                       "127.0.0.1:59092", stack.cfg.kafka_brokers)},
        )  # fmt: skip
        port = free_port()
        sidecar = start_sidecar(
            app_id=app_id, app_port=port, resources_path=resources.path, config=resources.config,
            scheduler_address=stack.cfg.scheduler_address, log_dir=folder, extra_env=dict(resources.env),
            app_api_token=APP_TOKEN, wait_for="outbound",
        )  # fmt: skip
        exits.callback(sidecar.stop)
        env = {"TODO_DATABASE_URL": pg_url, "TODO_JWT_SECRET": JWT_SECRET, "APP_API_TOKEN": APP_TOKEN,
               "TODO_LOG_LEVEL": "WARNING", "TODO_TIMEZONE": "UTC", **sidecar.app_env()}  # fmt: skip
        proc = _start_app([TODO_AGENT, "serve", "api", "--port", str(port)], env, f"http://127.0.0.1:{port}",
                          folder / "api.log")  # fmt: skip
        exits.callback(lambda: stop_pid(proc.pid, timeout=10))
        sidecar.wait_ready("app", timeout=90)
        verifier = JwtVerifier(secret=JWT_SECRET, audience="todo-agent")
        tokens: dict[str, str | None] = {
            f"bench-{n}": verifier.issue(f"bench-{n}", ttl=7200) for n in range(users)
        }
        yield Target(url=f"http://127.0.0.1:{port}", api_pid=proc.pid, daprd_pid=sidecar.pid, tokens=tokens,
                     database_url=pg_url)  # fmt: skip


# -- the load ------------------------------------------------------------------------------
class ToolCallFailed(Exception):
    pass


class WireMcpSession:
    """An MCP client speaking the streamable HTTP wire format itself, on aiohttp: the load
    generator shares the machine's two CPUs with the system under test, and the SDK client
    costs it ~3.5 ms of CPU per call. The requests are what ``mcp.Client`` sends (protocol
    ``LATEST_PROTOCOL_VERSION``: one ``server/discover`` first, then ``tools/call`` POSTs with
    the protocol, method and tool name headers and the ``_meta`` the SDK puts in each request);
    every answer is checked: HTTP 200, a JSON-RPC result (not an error), ``isError`` false and
    structured content. ``--client sdk`` uses the SDK client instead."""

    def __init__(self, url: str, token: str | None) -> None:
        self._url = f"{url}/mcp"
        self._token = token
        self._ids = iter(range(1, 1 << 62))
        self._http: aiohttp.ClientSession | None = None
        self._meta = {
            "io.modelcontextprotocol/protocolVersion": LATEST_PROTOCOL_VERSION,
            "io.modelcontextprotocol/clientInfo": {"name": "benchmarks.events_e2e", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {},
        }

    async def __aenter__(self) -> WireMcpSession:
        headers = {
            "accept": "application/json, text/event-stream",
            "content-type": "application/json",
            "mcp-protocol-version": LATEST_PROTOCOL_VERSION,
        }
        if self._token:
            headers["authorization"] = f"Bearer {self._token}"
        self._http = aiohttp.ClientSession(
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=60),
            connector=aiohttp.TCPConnector(limit=IN_FLIGHT),
        )
        found = await self._request("server/discover", {})
        if LATEST_PROTOCOL_VERSION not in found.get("supportedVersions", []):
            raise ToolCallFailed(f"the server does not speak {LATEST_PROTOCOL_VERSION}: {found}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.close()

    async def _request(self, method: str, params: dict[str, Any], **headers: str) -> dict[str, Any]:
        assert self._http is not None
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": method,
                "params": {**params, "_meta": self._meta}}  # fmt: skip
        async with self._http.post(self._url, json=body, headers={"mcp-method": method, **headers}) as r:
            if r.status != 200 or r.content_type != "application/json":
                raise ToolCallFailed(f"{method}: HTTP {r.status} {r.content_type} {(await r.text())[:300]}")
            answer = await r.json()
        if "error" in answer:
            raise ToolCallFailed(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer["result"]
        return result

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """The tool's structured content (raises when the call or the tool failed)."""
        result = await self._request(
            "tools/call", {"name": name, "arguments": arguments}, **{"mcp-name": name}
        )
        if result.get("isError") or not isinstance(result.get("structuredContent"), dict):
            raise ToolCallFailed(f"{name}: {str(result)[:300]}")
        content: dict[str, Any] = result["structuredContent"]
        return content


class SdkMcpSession:
    """The same calls through the MCP SDK's own client (``--client sdk``)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        result = await self._client.call_tool(name, arguments)
        if result.is_error or not isinstance(result.structured_content, dict):
            raise ToolCallFailed(f"{name}: {result}")
        content: dict[str, Any] = result.structured_content
        return content


@contextlib.asynccontextmanager
async def mcp_session(url: str, token: str | None, client: str = "wire") -> AsyncIterator[Any]:
    if client == "wire":
        async with WireMcpSession(url, token) as session:
            yield session
        return
    headers = {"authorization": f"Bearer {token}"} if token else {}
    transport = streamable_http_client(
        f"{url}/mcp", http_client=httpx2.AsyncClient(headers=headers, timeout=60)
    )
    async with Client(transport) as sdk_client:
        yield SdkMcpSession(sdk_client)


async def watch(url: str, token: str | None, m: Measurements, ready: asyncio.Event) -> None:
    """The owner's socket, as a client that keeps up would use it: when the server drops it for
    falling too far behind, reconnect and resume after the last event id seen (a ``reset``, sent
    when more was missed than the server replays, is counted: those updates are lost to it)."""
    base = url.replace("http://", "ws://") + "/ws" + (f"?token={token}" if token else "")
    last_id: str | None = None
    while True:
        ws_url = base + (("&" if "?" in base else "?") + f"last_event_id={last_id}" if last_id else "")
        try:
            async with websockets.connect(ws_url, max_queue=None) as ws:
                ready.set()
                async for raw in ws:
                    message = json.loads(raw)
                    if message.get("type") == "reset":
                        m.resets += 1
                    if message.get("type") != "task":
                        continue
                    last_id = str(message["id"])
                    if message.get("event_type") == "created":
                        task_id = int(message["task_id"])
                        if task_id not in m.seen_at:
                            m.seen_at[task_id], m.seen_wall[task_id] = time.perf_counter(), time.time()
        except (websockets.ConnectionClosed, OSError):
            pass
        m.reconnects += 1
        await asyncio.sleep(0.1)


async def warm_up(url: str, tokens: dict[str, str | None], client: str, limit: float = 90) -> None:
    """The broadcast subscription starts at the newest offset once joined: probe until live."""
    user, token = next(iter(tokens.items()))
    m, ready = Measurements(), asyncio.Event()
    watcher = asyncio.create_task(watch(url, token, m, ready))
    await ready.wait()
    deadline = time.monotonic() + limit
    async with mcp_session(url, token, client) as session:
        while time.monotonic() < deadline:
            task_id = int((await session.call_tool("add_task", {"title": "warm-up"}))["id"])
            for _ in range(30):
                if task_id in m.seen_at:
                    watcher.cancel()
                    return
                await asyncio.sleep(0.1)
    raise SystemExit(f"no live update reached the WebSocket of {user} in {limit}s")


async def run_load(
    target: Target, rate: float, seconds: float, drain: float, via: str, client: str
) -> Measurements:
    await warm_up(target.url, target.tokens, client)
    m = Measurements()
    users = list(target.tokens.items())
    readies = [asyncio.Event() for _ in users]
    watchers = [
        asyncio.create_task(watch(target.url, tok, m, r)) for (_, tok), r in zip(users, readies, strict=True)
    ]
    for ready in readies:
        await ready.wait()
    m.scrape_before = await asyncio.to_thread(scrape, target.url)
    relay_pid = m.scrape_before.value("todo_relay_process_pid")  # Dapr mode: the relay's child
    m.relay_pid = int(relay_pid) if relay_pid is not None else None
    before = {"api": cpu_seconds(target.api_pid), "daprd": cpu_seconds(target.daprd_pid),
              "relay": cpu_seconds(m.relay_pid), "client": time.process_time(), **system_cpu()}  # fmt: skip
    try:
        await _write(target, rate, seconds, drain, m, via, client)
    except Exception as exc:  # an MCP session that broke while closing: the measurements stand
        print(f"note: an MCP session ended with {exc!r}", file=sys.stderr)
    for _ in range(int(drain * 10)):  # late messages
        if set(m.sent_at) <= set(m.seen_at):
            break
        await asyncio.sleep(0.1)
    m.cpu_s = {
        "api": cpu_seconds(target.api_pid) - before["api"],
        "daprd": cpu_seconds(target.daprd_pid) - before["daprd"],
        "relay": cpu_seconds(m.relay_pid) - before["relay"],
        "client": time.process_time() - before["client"],  # this load generator (MCP client, sockets)
        **{name: spent - before[name] for name, spent in system_cpu().items()},
    }
    for watcher in watchers:
        watcher.cancel()
    return m


async def _write(
    target: Target, rate: float, seconds: float, drain: float, m: Measurements, via: str, client: str
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        tokens = list(target.tokens.values())
        if via == "mcp":
            opened = (mcp_session(target.url, tokens[n % len(tokens)], client) for n in range(SESSIONS))
            sessions = [await stack.enter_async_context(session) for session in opened]
        else:
            sessions = [await stack.enter_async_context(rest_client(target.url, tokens[n % len(tokens)]))
                        for n in range(SESSIONS)]  # fmt: skip
        limits = [asyncio.Semaphore(IN_FLIGHT) for _ in sessions]
        total = int(rate * seconds)
        start = time.perf_counter()

        async def create(n: int) -> None:
            session = sessions[n % len(sessions)]
            async with limits[n % len(sessions)]:
                sent, sent_wall = time.perf_counter(), time.time()
                try:
                    if via == "mcp":
                        task_id = int((await session.call_tool("add_task", {"title": f"bench {n}"}))["id"])
                    else:
                        reply = await session.post("/api/tasks", json={"title": f"bench {n}"})
                        task_id = int(reply.raise_for_status().json()["id"])
                    m.sent_at[task_id], m.sent_wall[task_id] = sent, sent_wall
                except (Exception, asyncio.CancelledError):  # a broken MCP session cancels its calls
                    m.failures += 1

        pending = set()
        for n in range(total):
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.add(asyncio.create_task(create(n)))
        await asyncio.gather(*pending, return_exceptions=True)
        m.write_seconds = time.perf_counter() - start


@contextlib.asynccontextmanager
async def rest_client(url: str, token: str | None) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:
        yield client


def stages(target: Target, m: Measurements) -> dict[str, Any]:
    """Where the latency goes, from the outbox rows of the ``created`` events (Dapr mode):
    request sent -> written (row ``created_at``, just before the commit) -> published
    (``published_at``, set after daprd accepted the batch) -> on the socket; [p50, p99] in ms."""
    if target.database_url is None:
        return {}
    from sqlalchemy import text

    from tasks.db import make_engine

    engine = make_engine(target.database_url)
    with engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT task_id, created_at, published_at FROM outbox "
            "WHERE event_type = 'todo.task.created.v1' AND published_at IS NOT NULL"
        )).all()  # fmt: skip
    engine.dispose()
    split: dict[str, list[float]] = {"commit": [], "publish": [], "deliver": []}
    for task_id, created, published in rows:
        if task_id in m.sent_wall and task_id in m.seen_wall:
            committed, sent = created.timestamp(), published.timestamp()
            split["commit"].append((committed - m.sent_wall[task_id]) * 1000)
            split["publish"].append((sent - committed) * 1000)
            split["deliver"].append((m.seen_wall[task_id] - sent) * 1000)
    return {
        f"stage_{name}_ms": [round(percentile(v, 50), 1), round(percentile(v, 99), 1)]
        for name, v in split.items() if v
    }  # fmt: skip


def figures(target: Target, m: Measurements) -> dict[str, Any]:
    latencies = [(m.seen_at[t] - s) * 1000 for t, s in m.sent_at.items() if t in m.seen_at]
    after = scrape(target.url)
    run = after.minus(m.scrape_before) if m.scrape_before is not None else after

    def rounded(value: float | None) -> float | None:
        return round(value, 2) if value is not None else None

    def ms(value: float | None) -> float | None:
        return round(value * 1000, 2) if value is not None else None

    return {
        "p50_ms": round(percentile(latencies, 50), 2) if latencies else None,
        "p95_ms": round(percentile(latencies, 95), 2) if latencies else None,
        "p99_ms": round(percentile(latencies, 99), 2) if latencies else None,
        "mean_ms": round(statistics.fmean(latencies), 2) if latencies else None,
        "writes": len(m.sent_at),
        "write_failures": m.failures,
        "writes_per_s": round(len(m.sent_at) / m.write_seconds, 1) if m.write_seconds else 0.0,
        "relay_lag_ms": ms(run.quantile("todo_relay_lag_seconds", 0.5)),
        "relay_lag_p95_ms": ms(run.quantile("todo_relay_lag_seconds", 0.95)),
        "relay_round_ms": {  # p50 of the relay's claim / publish / mark; mean rows per round
            **{
                phase: ms(run.quantile("todo_relay_round_phase_seconds", 0.5, phase=phase))
                for phase in ("claim", "publish", "mark")
            },
            "rows_mean": rounded(run.mean("todo_relay_round_rows")),
        },  # fmt: skip
        "relay_backlog": after.value("todo_outbox_backlog"),
        "lost": len(set(m.sent_at) - set(m.seen_at)),
        "socket_reconnects": m.reconnects,
        "socket_resets": m.resets,
        "api_cpu_ms_per_write": round(m.cpu_s.get("api", 0) * 1000 / max(1, len(m.sent_at)), 2),
        "daprd_cpu_ms_per_write": round(m.cpu_s.get("daprd", 0) * 1000 / max(1, len(m.sent_at)), 2),
        "relay_cpu_ms_per_write": round(m.cpu_s.get("relay", 0) * 1000 / max(1, len(m.sent_at)), 2),
        "client_cpu_ms_per_write": round(m.cpu_s.get("client", 0) * 1000 / max(1, len(m.sent_at)), 2),
        "postgres_cpu_ms_per_write": round(m.cpu_s.get("postgres", 0) * 1000 / max(1, len(m.sent_at)), 2),
        "kafka_cpu_ms_per_write": round(m.cpu_s.get("kafka", 0) * 1000 / max(1, len(m.sent_at)), 2),
        # everything the machine did while writing, per write: its two CPUs give 2,000 ms a second
        "machine_cpu_ms_per_write": round(m.cpu_s.get("machine", 0) * 1000 / max(1, len(m.sent_at)), 2),
        **stages(target, m),
        "api_rss_mb": rss_mb(target.api_pid),
        "api_peak_rss_mb": rss_mb(target.api_pid, "VmHWM"),
        "relay_rss_mb": rss_mb(m.relay_pid),
        "daprd_rss_mb": rss_mb(target.daprd_pid),
        "daprd_peak_rss_mb": rss_mb(target.daprd_pid, "VmHWM"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100, help="task creates per second")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--users", type=int, default=4, help="users (MCP sessions + sockets) in Dapr mode")
    parser.add_argument("--drain", type=float, default=20, help="seconds to wait for late messages")
    parser.add_argument("--mode", choices=("both", "dapr", "embedded"), default="both")
    parser.add_argument("--via", choices=("mcp", "rest"), default="mcp", help="create over MCP or REST")
    parser.add_argument(
        "--client",
        choices=("wire", "sdk"),
        default="wire",
        help="MCP load client: the lean wire client (default) or the MCP SDK's own (~3.5 ms CPU per call)",
    )
    args = parser.parse_args()
    results: dict[str, dict[str, Any]] = {}
    for mode in ("dapr", "embedded"):
        if args.mode not in ("both", mode):
            continue
        folder = tempfile.mkdtemp(prefix=f"bench-events-{mode}-")  # kept: the app and daprd logs
        print(f"{mode} mode: logs in {folder}", file=sys.stderr)
        system = dapr if mode == "dapr" else embedded
        with system(args.users, Path(folder)) as target:
            load = run_load(target, args.rate, args.seconds, args.drain, args.via, args.client)
            with asyncio.Runner(loop_factory=new_event_loop) as runner:  # uvloop: a lighter client
                m = runner.run(load)
            client = args.client if args.via == "mcp" else None
            results[mode] = {"mode": mode, "via": args.via, "client": client, "rate": args.rate,
                             "seconds": args.seconds,
                             **figures(target, m)}  # fmt: skip
        print(json.dumps(results[mode]), file=sys.stderr)
    line = dict(results.get("dapr") or results["embedded"])
    if "dapr" in results and "embedded" in results:
        d, e = results["dapr"], results["embedded"]
        line["embedded"] = {
            k: e[k] for k in ("p50_ms", "p95_ms", "p99_ms", "writes_per_s", "relay_lag_ms", "lost")
        }
        line["embedded_over_dapr"] = {
            k: round(e[k] / d[k], 2) if d.get(k) and e.get(k) is not None else None
            for k in ("p50_ms", "p99_ms", "writes_per_s")
        }
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
