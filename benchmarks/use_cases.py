"""CPU and wall time per task use case on PostgreSQL, called as the MCP tools call them.

    python -m benchmarks.use_cases --rounds 200

Each round runs, for one user with a few other tasks, the operations a chat turn's tools run:
``add`` (title and an ISO 8601 due time), ``list_week`` (pending tasks due this week, bounds in
ISO 8601 as the offline model sends them), ``list_search`` (all tasks whose title or description
contains a word), ``update_title``, ``complete`` (what the ``complete_task`` tool runs in its
worker thread) and ``delete``, each on the round's new task (due, not repeating). Every operation
includes resolving the acting user from a token's identity (``Profiles.actor`` with the token's
zone), as the MCP server does per call. Everything runs in this thread (psycopg is synchronous),
so ``time.thread_time`` is the operation's whole CPU cost on the client side.

A fixed pure-Python workload (``calibration``) runs in each round too, to show how fast the
machine was during the run: on a shared machine its speed drifts between runs by as much as a
change saves (±20 %). Compare code by alternating runs of both versions several times and look
at the operations a change did not touch; it only roughly tracks the database operations, which
spend much of their CPU in the kernel (one round trip is ~60-100 us of CPU here).

The database is a fresh one on the devstack PostgreSQL (brought up if needed, dropped at the
end), or ``--database-url``. The last line is one JSON object: per operation the CPU p50 and the
median wall time in microseconds.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from mcp_server.server import complete_task_for
from tasks.db import make_engine, migrate
from tasks.inputs import TaskChanges, TaskDraft, TaskQuery
from tasks.profiles import Profiles
from tasks.service import Actor, TaskService
from tasks.unit_of_work import UnitOfWorkFactory

OPERATIONS: Final = ("add", "list_week", "list_search", "update_title", "complete", "delete")
USER: Final = "bench-user"
ZONE: Final = "Europe/Berlin"


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class Round:
    """One round's operations on one new task, each a callable as an MCP tool would run it."""

    def __init__(self, service: TaskService, profiles: Profiles, number: int) -> None:
        self._service = service
        self._profiles = profiles
        self._number = number
        self._task_id = 0
        now = datetime.now(UTC)
        week_start = (now - timedelta(days=now.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
        self._week = (_iso(week_start), _iso(week_start + timedelta(days=7)))
        self._due = _iso(now + timedelta(days=2))

    def _actor(self) -> Actor:
        return self._profiles.actor(USER, token_zone=ZONE)

    def add(self) -> None:
        draft = TaskDraft(title=f"Bench task {self._number}", due=self._due)
        self._task_id = self._service.add(self._actor(), draft).id

    def list_week(self) -> None:
        start, end = self._week
        query = TaskQuery(status="pending", due_after=start, due_before=end, limit=50)
        self._service.list(self._actor(), query)

    def list_search(self) -> None:
        self._service.list(self._actor(), TaskQuery(status="all", search=f"task {self._number}", limit=50))

    def update_title(self) -> None:
        changes = TaskChanges(title=f"Bench task {self._number} renamed")
        self._service.update(self._actor(), self._task_id, changes)

    def complete(self) -> None:
        complete_task_for(self._service, self._actor(), self._task_id)

    def delete(self) -> None:
        self._service.delete(self._actor(), self._task_id)


def calibration() -> None:
    """The same pure-Python work every time (about a millisecond): dicts, strings, JSON."""
    rows = [{"id": i, "title": f"task {i}", "tags": ["a", "b"], "due": None} for i in range(300)]
    json.loads(json.dumps(rows))


def measure(service: TaskService, profiles: Profiles, rounds: int, warmup: int) -> dict[str, Any]:
    names = (*OPERATIONS, "calibration")
    cpu: dict[str, list[float]] = {name: [] for name in names}
    wall: dict[str, list[float]] = {name: [] for name in names}
    for number in range(warmup + rounds):
        if number == warmup:
            gc.collect()
        one = Round(service, profiles, number)
        for name in names:
            operation: Callable[[], None] = calibration if name == "calibration" else getattr(one, name)
            c0, w0 = time.thread_time(), time.perf_counter()
            operation()
            c1, w1 = time.thread_time(), time.perf_counter()
            if number >= warmup:
                cpu[name].append((c1 - c0) * 1e6)
                wall[name].append((w1 - w0) * 1e6)
    figures: dict[str, Any] = {"rounds": rounds}
    for name in names:
        figures[f"{name}_cpu_p50_us"] = round(statistics.median(cpu[name]), 1)
        figures[f"{name}_wall_p50_us"] = round(statistics.median(wall[name]), 1)
    return figures


def seed(service: TaskService, actor: Actor, count: int) -> None:
    """Other tasks of the user: some due this week, some later, some undated."""
    now = datetime.now(UTC)
    for i in range(count):
        due = None if i % 3 == 2 else _iso(now + timedelta(days=1 + 4 * (i % 3), hours=i))
        service.add(actor, TaskDraft(title=f"Seeded chore {i}", due=due, tags=["home"] if i % 2 else None))


def report(figures: dict[str, Any]) -> None:
    print(f"\n{figures['rounds']} rounds, microseconds per operation", file=sys.stderr)
    print(f"  {'operation':<14}{'CPU p50':>10}{'wall p50':>10}", file=sys.stderr)
    for name in (*OPERATIONS, "calibration"):
        cpu, wall = figures[f"{name}_cpu_p50_us"], figures[f"{name}_wall_p50_us"]
        print(f"  {name:<14}{cpu:>10.0f}{wall:>10.0f}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.use_cases", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--seed", type=int, default=12, help="other tasks the user has")
    parser.add_argument("--database-url", help="use this database instead of a fresh devstack one")
    args = parser.parse_args(argv)
    with ExitStack() as exits:
        if args.database_url:
            url = args.database_url
        else:
            from benchmarks.stack import stack_with_fresh_database

            _stack, url = stack_with_fresh_database(exits)
        engine = make_engine(url)
        exits.callback(engine.dispose)
        migrate(engine)
        uow = UnitOfWorkFactory(engine)
        service = TaskService(uow)
        profiles = Profiles(uow, default_timezone="UTC")
        seed(service, Actor(USER, ZONE), args.seed)
        figures = measure(service, profiles, args.rounds, args.warmup)
    report(figures)
    print(json.dumps({"database": engine.dialect.name, **figures}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
