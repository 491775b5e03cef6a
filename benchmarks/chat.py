"""Chat turn latency with the offline model through the API, split into model, tools and memory.

    python -m benchmarks.chat --turns 200                  # embedded and Dapr mode
    python -m benchmarks.chat --turns 200 --mode embedded  # SQLite, no stack needed
    python -m benchmarks.chat --turns 200 --history 1000   # each conversation starts 1,000 items long

Each turn is a real ``POST /api/chat`` against a uvicorn server: the agent opens its MCP
connection to the server's own ``/mcp``, calls the task tools, and loads and saves conversation
memory (SQL in the embedded default; the SDK's ``DaprSession`` over daprd and the PostgreSQL
state store in Dapr mode, whose stack this script brings up itself). The server reports its
split in the ``Server-Timing`` header; ``overhead`` is the whole turn minus the model. Dapr mode
runs with JWT auth (``--no-auth`` to drop it), so every MCP call carries the caller's token. The
server's CPU per turn (process CPU minus the client thread's, split by thread) is reported too.
With ``--history N`` every conversation the script talks in already holds N items (user and
assistant messages, written through the mode's own conversation store before the timed turns),
so ``memory`` and ``overhead`` show what a long conversation costs a turn.
The last line is one JSON object (Dapr-mode figures when Dapr mode ran).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from agent.memory import ConversationStore
from agent.transcript import assistant_message
from benchmarks.stack import stack_with_fresh_database
from devstack.appserver import serve_in_thread
from devstack.procs import free_port
from observability import tracing
from sidecar import Sidecar
from tasks.db import make_engine
from todo_agent.api import app_for
from todo_agent.bootstrap import Role, bootstrap, make_verifier, sidecar_address
from todo_agent.cli import configure_logging
from todo_agent.settings import Settings

SCRIPT = (
    "add bench task {n} tomorrow 5pm high priority",
    "what's due this week?",
    "complete bench task {n}",
    "delete bench task {n}",
    "yes",
)
PARTS = ("total", "model", "tools", "memory", "overhead", "client")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def server_timing(header: str) -> dict[str, float]:
    parts = {}
    for entry in header.split(","):
        name, _, duration = entry.strip().partition(";dur=")
        parts[name] = float(duration)
    return parts


def run_turns(
    url: str, turns: int, warmup: int, token: str | None = None, conversations: list[str] | None = None
) -> dict[str, list[float]]:
    """Send the turns; ``samples["server_cpu"]`` is the server's CPU ms per measured turn (the
    process's CPU time minus this client thread's, so every server thread counts). Each group
    of the script's turns starts a new conversation, or continues the next of ``conversations``."""
    samples: dict[str, list[float]] = {part: [] for part in PARTS}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    cpu_started = client_cpu_started = 0.0
    threads_started: dict[str, float] = {}
    with httpx.Client(base_url=url, timeout=60, headers=headers) as client:
        conversation, n = None, 0
        for index in range(turns + warmup):
            step = index % len(SCRIPT)
            if step == 0:
                conversation, n = conversations[n] if conversations else None, n + 1
            if index == warmup:
                cpu_started, client_cpu_started = time.process_time(), time.thread_time()
                threads_started = thread_cpu()
            started = time.perf_counter()
            response = client.post(
                "/api/chat", json={"message": SCRIPT[step].format(n=n), "conversation_id": conversation}
            )
            elapsed = (time.perf_counter() - started) * 1000
            response.raise_for_status()
            conversation = response.json()["conversation_id"]
            if index < warmup:
                continue
            timing = server_timing(response.headers["server-timing"])
            for part in ("total", "model", "tools", "memory"):
                samples[part].append(timing[part])
            samples["overhead"].append(timing["total"] - timing["model"])
            samples["client"].append(elapsed)
    server_cpu = (time.process_time() - cpu_started) - (time.thread_time() - client_cpu_started)
    samples["server_cpu"] = [server_cpu * 1000 / max(1, turns)]
    ended = thread_cpu()
    for group in sorted(ended):
        spent = (ended[group] - threads_started.get(group, 0.0)) * 1000 / max(1, turns)
        if spent >= 0.05 and group != "client":
            samples[f"cpu:{group}"] = [spent]
    return samples


def thread_cpu() -> dict[str, float]:
    """CPU seconds so far per group of this process's threads (Linux ``/proc``): the server's
    event loop, its worker threads, the relay, gRPC, ... (a rough where-does-the-CPU-go)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    main = threading.main_thread().native_id
    ticks = os.sysconf("SC_CLK_TCK")
    groups: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        tid = int(task.name)
        name = "client" if tid == main else names.get(tid, "other (native)")
        group = name.split("-")[0].split("_")[0].rstrip("0123456789 ") or name
        groups[group] = groups.get(group, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return groups


def summary(samples: dict[str, list[float]]) -> dict[str, float]:
    figures: dict[str, float] = {}
    for part, values in samples.items():
        if part.startswith("cpu:"):
            figures[f"{part}_ms_per_turn"] = round(values[0], 2)
            continue
        if part == "server_cpu":
            figures["server_cpu_ms_per_turn"] = round(values[0], 2)
            continue
        figures[f"{part}_p50_ms"] = round(statistics.median(values), 2)
        figures[f"{part}_p99_ms"] = round(percentile(values, 99), 2)
    return figures


@contextmanager
def serving(settings: Settings, role: Role) -> Iterator[str]:
    server = serve_in_thread(app_for(bootstrap(role, settings)), settings.port)
    try:
        yield server.url
    finally:
        server.stop()


@contextmanager
def embedded_settings() -> Iterator[Settings]:
    with tempfile.TemporaryDirectory(prefix="bench-chat-") as folder:
        yield Settings(database_url=f"sqlite:///{folder}/todo.db", data_dir=Path(folder), port=free_port())


@contextmanager
def dapr_settings(stack_exit: ExitStack, *, auth: bool = True) -> Iterator[Settings]:
    """Bring up PostgreSQL, Kafka, the scheduler and a daprd for the api (what was started stops)."""

    from devstack.components import render
    from devstack.sidecar import start_sidecar

    stack, pg_url = stack_with_fresh_database(stack_exit)
    with tempfile.TemporaryDirectory(prefix="bench-chat-dapr-") as folder:
        resources = render(Path(folder) / "resources", kafka_brokers=stack.cfg.kafka_brokers, pg_url=pg_url)
        sidecar = start_sidecar(
            app_id=f"todo-api-bench-{pg_url[-8:]}", app_port=None, resources_path=resources.path,
            config=resources.config, scheduler_address=stack.cfg.scheduler_address,
            log_dir=Path(folder) / "logs", extra_env=dict(resources.env),
        )  # fmt: skip
        try:
            os.environ.update(sidecar.app_env())
            yield Settings(
                database_url=pg_url, data_dir=Path(folder), port=free_port(),
                dapr_http_port=sidecar.http_port, dapr_grpc_port=sidecar.grpc_port,
                jwt_secret=SecretStr(secrets.token_urlsafe(32)) if auth else None,
            )  # fmt: skip
        finally:
            sidecar.stop()


def conversations_needed(turns: int, warmup: int) -> int:
    return -(-(turns + warmup) // len(SCRIPT))


def seed_history(settings: Settings, user_id: str, count: int, items: int) -> list[str]:
    """``count`` conversations of ``user_id`` holding ``items`` items each (a user message and an
    assistant reply in turn), written through the mode's conversation store; their ids."""
    if items <= 0:
        return []
    history = [
        {"role": "user", "content": f"earlier message {n}"} if n % 2 == 0 else assistant_message(f"reply {n}")
        for n in range(items)
    ]

    async def seed() -> list[str]:
        store = _store(settings)
        try:
            made = []
            for number in range(count):
                info = await store.create(user_id, title=f"long conversation {number}")
                await store.append(user_id, info.id, history)  # type: ignore[arg-type]
                made.append(info.id)
            return made
        finally:
            await store.close()

    return asyncio.run(seed())


def _store(settings: Settings) -> ConversationStore:
    if settings.dapr_enabled:
        from agent.dapr_state import DaprStateClient
        from agent.memory_dapr import DaprConversationStore

        state = DaprStateClient(Sidecar(sidecar_address(settings)), store_name=settings.statestore_name)
        return DaprConversationStore(state, ttl_seconds=settings.conversation_ttl_seconds)
    from agent.memory_sql import SqlConversationStore

    return SqlConversationStore(make_engine(str(settings.database_url)))


def report(mode: str, figures: dict[str, float], turns: int) -> None:
    print(f"\n{mode} mode, {turns} turns (ms)", file=sys.stderr)
    print(f"  {'part':<9}{'p50':>9}{'p99':>9}", file=sys.stderr)
    for part in PARTS:
        print(
            f"  {part:<9}{figures[f'{part}_p50_ms']:>9.2f}{figures[f'{part}_p99_ms']:>9.2f}", file=sys.stderr
        )
    print(f"  server CPU per turn: {figures['server_cpu_ms_per_turn']:.2f} ms", file=sys.stderr)
    for key, value in figures.items():
        if key.startswith("cpu:"):
            print(f"    threads {key[4 : -len('_ms_per_turn')]}: {value:.2f} ms", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chat", description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--mode", choices=("both", "embedded", "dapr"), default="both")
    parser.add_argument(
        "--history", type=int, default=0, help="items each conversation holds before its first timed turn"
    )
    parser.add_argument(
        "--no-auth",
        action="store_true",
        help="Dapr mode without JWT auth (the agent's MCP calls carry no token)",
    )
    args = parser.parse_args(argv)
    configure_logging(os.environ.setdefault("TODO_LOG_LEVEL", "WARNING"))  # as `todo-agent serve` does
    # As `todo-agent serve` does before it builds the app: TODO_TRACING=on with an OTLP endpoint
    # (e.g. the devstack's Jaeger) measures the turns with every span made and exported.
    tracing_on = tracing.configure("todo-bench-chat")
    print(f"tracing: {'on' if tracing_on else 'off'}", file=sys.stderr)
    results: dict[str, dict[str, float]] = {}
    if args.mode in ("both", "embedded"):
        with embedded_settings() as settings, serving(settings, "all") as url:
            count = conversations_needed(args.turns, args.warmup)
            long = seed_history(settings, settings.user, count, args.history)
            results["embedded"] = summary(run_turns(url, args.turns, args.warmup, conversations=long))
        report("embedded", results["embedded"], args.turns)
    if args.mode in ("both", "dapr"):
        with (
            ExitStack() as stack,
            dapr_settings(stack, auth=not args.no_auth) as settings,
            serving(settings, "api") as url,
        ):
            verifier = make_verifier(settings)
            token = verifier.issue("bench-user", ttl=3600) if verifier else None
            count = conversations_needed(args.turns, args.warmup)
            long = seed_history(settings, "bench-user" if token else settings.user, count, args.history)
            results["dapr"] = summary(run_turns(url, args.turns, args.warmup, token, conversations=long))
        report("dapr", results["dapr"], args.turns)
    headline = results.get("dapr") or results["embedded"]
    line: dict[str, Any] = {
        "mode": "dapr" if "dapr" in results else "embedded",
        "turns": args.turns,
        "history": args.history,
        "overhead_p50_ms": headline["overhead_p50_ms"],
        "overhead_p99_ms": headline["overhead_p99_ms"],
        "model_p50_ms": headline["model_p50_ms"],
        "tools_p50_ms": headline["tools_p50_ms"],
        "memory_p50_ms": headline["memory_p50_ms"],
        "server_cpu_ms_per_turn": headline["server_cpu_ms_per_turn"],
    }
    if "embedded" in results and "dapr" in results:
        keys = ("overhead_p50_ms", "overhead_p99_ms", "model_p50_ms", "tools_p50_ms", "memory_p50_ms",
                "server_cpu_ms_per_turn")  # fmt: skip
        line.update({f"embedded_{key}": results["embedded"][key] for key in keys})
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
