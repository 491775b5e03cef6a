"""Tracing overhead: the embedded app's CPU per operation with tracing off and on, alternately.

Each run starts ``todo-agent run`` (role ``all``: SQLite, the in-process bus, the relay and the
consumers in the same process, the offline chat model) as a process of its own with
``TODO_TRACING=off`` or ``on``; with tracing on, its spans go over OTLP/HTTP to a receiver in this
process (``devstack.otlp``) that decodes and counts them (so the app does all the work of a real
export). After a warm-up, the run sends its operations one at a time and reads the server process's
CPU time (``/proc/<pid>/stat``: every thread, the exporter's too) before and after, waiting for
the outbox to drain and the exporter to flush before the second reading.

    .venv/bin/python -m benchmarks.tracing --op rest --ops 300 --pairs 3   # last line JSON
    .venv/bin/python -m benchmarks.tracing --op chat --ops 100 --pairs 3

``--op rest``: REST writes (create, rename, complete: three writes per task, each its own
request); ``--op chat``: chat turns through ``POST /api/chat`` (benchmarks.chat's script). The
runs alternate off/on, the order flipped every pair, so a drift of the shared machine hits both.
Printed: each run's server CPU ms per operation and wall ms per operation, the spans exported
per operation, the on/off ratio of the medians, and each pair's own on/off ratio with their
median (``pair_ratio_server_cpu_median``: the figure to quote; adjacent runs share the machine's
state of the moment).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from benchmarks.chat import SCRIPT
from benchmarks.events_e2e import cpu_seconds
from devstack.appserver import start_embedded
from devstack.otlp import TraceReceiver
from devstack.procs import stop_pid, wait_until

WARMUP = 15


@contextmanager
def embedded_app(tracing: str, sink: TraceReceiver, extra_env: dict[str, str]) -> Iterator[tuple[int, str]]:
    """``todo-agent run`` on a fresh SQLite database; yields its pid and URL."""
    with tempfile.TemporaryDirectory(prefix="bench-tracing-") as folder:
        env = {"TODO_DATA_DIR": folder, "TODO_LOG_LEVEL": "WARNING", "TODO_TRACING": tracing,
               "OTEL_EXPORTER_OTLP_ENDPOINT": sink.url, "OTEL_BSP_SCHEDULE_DELAY": "500",
               **extra_env}  # fmt: skip
        proc, url, _ = start_embedded(Path(folder), env)
        try:
            yield proc.pid, url
        finally:
            stop_pid(proc.pid, timeout=10)


def rest_writes(http: httpx.Client, count: int, tag: str) -> None:
    """``count`` writes: create, rename, complete per task (the last task may be partial)."""
    done, n = 0, 0
    while done < count:
        n += 1
        task = http.post("/api/tasks", json={"title": f"{tag} {n}", "recurrence": "weekly"})
        task.raise_for_status()
        steps = [("PATCH", f"/api/tasks/{task.json()['id']}", {"title": f"{tag} {n} renamed"}),
                 ("POST", f"/api/tasks/{task.json()['id']}/complete", None)]  # fmt: skip
        done += 1
        for method, path, body in steps[: count - done]:
            http.request(method, path, json=body).raise_for_status()
            done += 1


def chat_turns(http: httpx.Client, count: int, tag: str) -> None:
    conversation, n = None, 0
    for index in range(count):
        step = index % len(SCRIPT)
        if step == 0:
            conversation, n = None, n + 1
        message = SCRIPT[step].format(n=f"{tag}{n}")
        reply = http.post("/api/chat", json={"message": message, "conversation_id": conversation})
        reply.raise_for_status()
        conversation = reply.json()["conversation_id"]


def outbox_backlog(http: httpx.Client) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(http.get("/metrics").text):
        if family.name == "todo_outbox_backlog":
            return float(family.samples[0].value)
    raise SystemExit("the app's /metrics has no todo_outbox_backlog")


def one_run(
    op: str, count: int, tracing: str, sink: TraceReceiver, extra_env: dict[str, str]
) -> dict[str, Any]:
    work = rest_writes if op == "rest" else chat_turns
    with embedded_app(tracing, sink, extra_env) as (pid, url), httpx.Client(base_url=url, timeout=60) as http:
        work(http, WARMUP, "warm-up")
        wait_until(lambda: outbox_backlog(http) == 0, what="the warm-up published", timeout=60)
        time.sleep(1.0)  # the exporter's batch of the warm-up goes out
        before, cpu, wall = len(sink.spans), cpu_seconds(pid), time.perf_counter()
        work(http, count, "bench")
        wall = time.perf_counter() - wall
        wait_until(lambda: outbox_backlog(http) == 0, what="the writes published", timeout=120)
        time.sleep(1.0)  # the exporter's last batch (OTEL_BSP_SCHEDULE_DELAY=500 ms)
        cpu = cpu_seconds(pid) - cpu
    names = Counter(span.name for span in sink.spans[before:])
    return {
        "tracing": tracing,
        "server_cpu_ms_per_op": round(cpu * 1000 / count, 3),
        "wall_ms_per_op": round(wall * 1000 / count, 3),
        "spans_per_op": round(names.total() / count, 2),
        "span_names_per_op": {name: round(n / count, 2) for name, n in names.most_common(20)},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--op", choices=("rest", "chat"), default="rest")
    parser.add_argument("--ops", type=int, default=300, help="operations per run")
    parser.add_argument("--pairs", type=int, default=3, help="off/on pairs (the order flips each pair)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="more environment for the traced runs (e.g. TODO_TRACING_SQL=on)")  # fmt: skip
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.env)
    sink = TraceReceiver()
    runs: list[dict[str, Any]] = []
    for pair in range(args.pairs):
        for tracing in ("off", "on") if pair % 2 == 0 else ("on", "off"):
            run = one_run(args.op, args.ops, tracing, sink, extra if tracing == "on" else {})
            print(json.dumps(run), file=sys.stderr)
            runs.append(run)
    figures: dict[str, Any] = {"op": args.op, "ops_per_run": args.ops, "env": extra}
    for tracing in ("off", "on"):
        mine = [r for r in runs if r["tracing"] == tracing]
        for key in ("server_cpu_ms_per_op", "wall_ms_per_op", "spans_per_op"):
            figures[f"{tracing}_{key}"] = [r[key] for r in mine]
            figures[f"{tracing}_{key}_median"] = round(statistics.median(r[key] for r in mine), 3)
    for key in ("server_cpu_ms_per_op", "wall_ms_per_op"):
        figures[f"ratio_{key}"] = round(figures[f"on_{key}_median"] / figures[f"off_{key}_median"], 3)
    # Each pair's on/off ratio: its two runs were next to each other, so a drift of the shared
    # machine over the whole benchmark cancels out of it more than out of the medians above.
    pairs = [(runs[i], runs[i + 1]) for i in range(0, len(runs) - 1, 2)]
    ratios = [on["server_cpu_ms_per_op"] / off["server_cpu_ms_per_op"]
              for off, on in (sorted(p, key=lambda r: r["tracing"] == "on") for p in pairs)]  # fmt: skip
    figures["pair_ratios_server_cpu"] = [round(r, 3) for r in ratios]
    figures["pair_ratio_server_cpu_median"] = round(statistics.median(ratios), 3)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
