"""How the task reads and writes cost as one user's tasks grow: curves, not points.

    python -m benchmarks.growth                                  # 1k, 10k, 100k; SQLite and PostgreSQL
    python -m benchmarks.growth --sizes 1000,10000 --databases postgres --rounds 40

For each database, one user ("big") is given 1k, then 10k, then 100k tasks, and a second user
("small") has 10 tasks beside them throughout. At each size the same operations run through the
real use cases (``TaskService.list``, ``get``, ``add``), interleaved round by round so that the
machine's drift touches them alike:

- ``default_page``: the first page of pending tasks (what a list without filters shows);
- ``tag``: pending tasks with a tag one task in 50 has;
- ``tag_absent``: pending tasks with a tag no task has (the worst case: nothing to stop at);
- ``search``: all tasks whose title or description contains a word one task in 100 has;
- ``search_rare``: the same for a phrase at most one task has;
- ``due_range``: pending tasks due in the next 7 days;
- ``overdue``: pending tasks past their due time;
- ``completed``: the first page of completed tasks;
- ``next_page``: the page after the first page of pending tasks (keyset cursor);
- ``get``: one task by id;
- ``add``: one new task (with its outbox row, as every write);
- ``small_default_page``, ``small_tag``, ``small_search``: the small user's own lists.

Rows are seeded in bulk through the domain's own model (``Task``, tags through its setter) and
``UnitOfWork.insert``, 5,000 per transaction, without outbox rows (seeding is not the subject;
an outbox row per seeded task would only grow the outbox). Due times spread from 60 days ago to
300 days ahead (a third undated), 30 % are completed. PostgreSQL gets ``ANALYZE`` after each
seeding, as autovacuum would do after such an insert.

Per operation and size: wall p50 and p99 (ms) and CPU per operation (this thread's CPU time,
p50, ms: the client side of the work, SQLite's whole work); on a PostgreSQL on this machine
also the database's CPU per operation (``server_cpu_ms``, p50: the run time of this database's
client backends, from ``/proc/<pid>/schedstat``). ``ratio`` is p99 at the largest
size over p99 at the smallest. The PostgreSQL database is a fresh one on the devstack (brought
up if needed, dropped at the end) or ``--database-url``; SQLite is a file in a temporary folder.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Engine, text

from tasks.db import make_engine, migrate
from tasks.inputs import TaskDraft, TaskQuery
from tasks.models import Task
from tasks.service import Actor, TaskService
from tasks.unit_of_work import UnitOfWorkFactory

BIG: Final = Actor("growth-big", "Europe/Berlin")
SMALL: Final = Actor("growth-small", "Europe/Berlin")
SMALL_TASKS: Final = 10
BATCH: Final = 5_000
#: Words in titles: task i has WORDS[i % 100], so a search for one matches one task in 100.
WORDS: Final = tuple(f"{a}{b}" for a in ("amber", "basil", "cedar", "delta", "ember") for b in range(20))
SEARCH_WORD: Final = WORDS[37]
RARE_TAG: Final = "errand"  # one task in 50


def _task(owner: str, i: int, now: datetime) -> Task:
    """The ``i``-th seeded task of ``owner``: built as the service builds one."""
    due = None if i % 3 == 2 else now + timedelta(days=-60 + (i * 7919) % 360, minutes=i % 1440)
    done = i % 10 < 3
    task = Task(
        owner_id=owner,
        title=f"Seeded chore {i} {WORDS[i % len(WORDS)]}",
        description="Something to do around the house" if i % 4 == 0 else "",
        priority=("none", "low", "medium", "high")[i % 4],
        due_at=due,
        completed=done,
        completed_at=now - timedelta(days=i % 30) if done else None,
        timezone=BIG.timezone,
        created_at=now,
        updated_at=now,
    )
    task.tags = [t for t, every in (("home", 2), ("work", 3)) if i % every == 0]
    if i % 50 == 7:  # a pending task (i % 10 >= 3) for one in 50
        task.tags = [*task.tags, RARE_TAG]
    return task


def seed(uow_factory: UnitOfWorkFactory, owner: str, start: int, stop: int) -> None:
    """Tasks ``start`` to ``stop - 1`` of ``owner``, in transactions of ``BATCH`` rows."""
    now = datetime.now(UTC)
    for first in range(start, stop, BATCH):
        rows = [_task(owner, i, now) for i in range(first, min(stop, first + BATCH))]
        with uow_factory() as uow:
            uow.insert(rows)
            uow.commit()


class Operations:
    """The measured operations, each a callable on the real use cases."""

    def __init__(self, service: TaskService, ids: list[int]) -> None:
        self._service = service
        self._ids = ids
        self._random = random.Random(7)
        first = service.list(BIG, TaskQuery(status="pending"))
        self._cursor = first.next_cursor
        self._added = 0

    def _list(self, actor: Actor, **query: Any) -> None:
        self._service.list(actor, TaskQuery(**query))

    def all(self) -> dict[str, Callable[[], None]]:
        now = datetime.now(UTC)
        week = {"due_after": now, "due_before": now + timedelta(days=7)}
        return {
            "default_page": lambda: self._list(BIG),
            "tag": lambda: self._list(BIG, tag=RARE_TAG),
            "tag_absent": lambda: self._list(BIG, tag="nobody-uses-this"),
            "search": lambda: self._list(BIG, status="all", search=SEARCH_WORD),
            "search_rare": lambda: self._list(BIG, status="all", search="chore 31337 basil"),
            "due_range": lambda: self._list(BIG, **week),
            "overdue": lambda: self._list(BIG, overdue=True),
            "completed": lambda: self._list(BIG, status="completed"),
            "next_page": lambda: self._list(BIG, cursor=self._cursor),
            "get": self._get,
            "add": self._add,
            "small_default_page": lambda: self._list(SMALL),
            "small_tag": lambda: self._list(SMALL, tag=RARE_TAG),
            "small_search": lambda: self._list(SMALL, status="all", search=SEARCH_WORD),
        }

    def _get(self) -> None:
        self._service.get(BIG, self._random.choice(self._ids))

    def _add(self) -> None:
        self._added += 1
        due = datetime.now(UTC) + timedelta(days=3)
        self._service.add(BIG, TaskDraft(title=f"Added {self._added}", due=due, tags=["home"]))


class ServerCpu:
    """The CPU time PostgreSQL's backends serving one database have run (ns), when they run on
    this machine: ``/proc/<pid>/schedstat`` counts it to the nanosecond."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.pids: list[int] = []

    def refresh(self) -> None:
        """The backends connected now (after the warm-up the pool holds all it will use)."""
        if self._engine.dialect.name != "postgresql":
            return
        with self._engine.connect() as connection:
            pids = connection.execute(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    " AND backend_type = 'client backend'"
                )
            ).scalars()
            self.pids = [pid for pid in pids if Path(f"/proc/{pid}/schedstat").exists()]

    def ns(self) -> int | None:
        if not self.pids:
            return None
        total = 0
        for pid in self.pids:
            try:
                total += int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pass  # a backend that ended: the pool replaced a connection
        return total


def measure(
    operations: dict[str, Callable[[], None]], rounds: int, warmup: int, server: ServerCpu | None = None
) -> dict[str, Any]:
    wall: dict[str, list[float]] = {name: [] for name in operations}
    cpu: dict[str, list[float]] = {name: [] for name in operations}
    server_cpu: dict[str, list[float]] = {name: [] for name in operations}
    for number in range(warmup + rounds):
        if number == warmup:
            gc.collect()
            if server is not None:
                server.refresh()
        for name, operation in operations.items():
            s0 = server.ns() if server is not None and number >= warmup else None
            c0, w0 = time.thread_time(), time.perf_counter()
            operation()
            c1, w1 = time.thread_time(), time.perf_counter()
            s1 = server.ns() if s0 is not None and server is not None else None
            if number >= warmup:
                wall[name].append((w1 - w0) * 1e3)
                cpu[name].append((c1 - c0) * 1e3)
                if s0 is not None and s1 is not None:
                    server_cpu[name].append((s1 - s0) / 1e6)
    return {
        name: {
            "p50_ms": round(statistics.median(wall[name]), 2),
            "p99_ms": round(_percentile(wall[name], 0.99), 2),
            "cpu_ms": round(statistics.median(cpu[name]), 2),
            **({"server_cpu_ms": round(statistics.median(server_cpu[name]), 3)} if server_cpu[name] else {}),
        }
        for name in operations
    }


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def curve(engine: Engine, sizes: list[int], rounds: int, warmup: int) -> dict[str, Any]:
    """The figures per size for one database (fresh, migrated here)."""
    migrate(engine)
    uow_factory = UnitOfWorkFactory(engine)
    service = TaskService(uow_factory)
    seed(uow_factory, SMALL.user_id, 0, SMALL_TASKS)
    figures: dict[str, Any] = {}
    seeded = 0
    for size in sizes:
        started = time.perf_counter()
        seed(uow_factory, BIG.user_id, seeded, size)
        seeded = size
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.execute(text("ANALYZE tasks"))
        seconds = time.perf_counter() - started
        with engine.connect() as connection:
            ids = list(
                connection.execute(
                    text("SELECT id FROM tasks WHERE owner_id = :o"), {"o": BIG.user_id}
                ).scalars()
            )
        print(f"  {engine.dialect.name}: {size} tasks seeded ({seconds:.1f} s)", file=sys.stderr)
        figures[str(size)] = measure(Operations(service, ids).all(), rounds, warmup, ServerCpu(engine))
        report(engine.dialect.name, size, figures[str(size)])
    return figures


def ratios(figures: dict[str, Any], sizes: list[int]) -> dict[str, float]:
    low, high = figures[str(sizes[0])], figures[str(sizes[-1])]
    return {name: round(high[name]["p99_ms"] / max(low[name]["p99_ms"], 1e-6), 2) for name in low}


def report(database: str, size: int, figures: dict[str, Any]) -> None:
    print(
        f"  {database}, {size} tasks (load {_load()}): {'p50':>8}{'p99':>8}{'CPU':>8}{'db CPU':>8} ms",
        file=sys.stderr,
    )
    for name, one in figures.items():
        db_cpu = f"{one['server_cpu_ms']:>8.2f}" if "server_cpu_ms" in one else f"{'-':>8}"
        print(
            f"    {name:<20}{one['p50_ms']:>8.2f}{one['p99_ms']:>8.2f}{one['cpu_ms']:>8.2f}{db_cpu}",
            file=sys.stderr,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.growth", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="the big user's task counts, ascending")
    parser.add_argument("--databases", default="sqlite,postgres", help="sqlite, postgres or both")
    parser.add_argument("--rounds", type=int, default=100, help="measured calls of each operation per size")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--database-url", help="PostgreSQL: use this (empty) database instead of a fresh one")
    args = parser.parse_args(argv)
    sizes = sorted(int(size) for size in args.sizes.split(","))
    result: dict[str, Any] = {"sizes": sizes, "rounds": args.rounds}
    for database in args.databases.split(","):
        with ExitStack() as exits:
            url = _url(database, args.database_url, exits)
            engine = make_engine(url)
            exits.callback(engine.dispose)
            load_before = _load()
            figures = curve(engine, sizes, args.rounds, args.warmup)
        result[database] = {
            "sizes": figures,
            "ratio_p99": ratios(figures, sizes),
            "load": [load_before, _load()],
        }
    print(json.dumps(result))
    return 0


def _load() -> float | None:
    """The 1-minute load average (the machine is shared: figures go with it)."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _url(database: str, given: str | None, exits: ExitStack) -> str:
    if database == "sqlite":
        folder = exits.enter_context(tempfile.TemporaryDirectory(prefix="growth-"))
        return f"sqlite:///{Path(folder) / 'todo.db'}"
    if database != "postgres":
        raise SystemExit(f"--databases: {database!r} is neither 'sqlite' nor 'postgres'")
    if given:
        return given
    from benchmarks.stack import stack_with_fresh_database

    _stack, url = stack_with_fresh_database(exits)
    return url


if __name__ == "__main__":
    raise SystemExit(main())
