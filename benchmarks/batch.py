"""One batch call by filter: 1,000 tasks completed at once, their events published, none lost.

    python -m benchmarks.batch                     # SQLite and a fresh devstack PostgreSQL
    python -m benchmarks.batch --database sqlite

For each database: 1,000 tasks tagged ``bench`` (added 50 per ``add_many`` call) among 100 other
tasks; then one ``change_many("complete", filter={"tag": "bench"}, confirm=True)`` call, as the
``change_tasks`` tool runs it (wall and CPU time); then the outbox relay publishes everything to a
counting publisher (wall time, events per second); then the checks: 1,000 completed tasks,
1,000 completion events carrying the batch's change id, each published once to ``task-events``
and ``task-updates``, no row left pending. Last, ``undo`` of the whole batch (wall time, 1,000
tasks open again). The last line is one JSON object per database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from events.relay import OutboxRelay
from tasks.db import make_engine, migrate
from tasks.inputs import TaskDraft, TaskFilter
from tasks.models import OutboxEvent, Task
from tasks.service import Actor, TaskService
from tasks.unit_of_work import UnitOfWorkFactory

USER: Final = Actor("bench-batch", "Europe/Berlin")
TASKS: Final = 1000
OTHERS: Final = 100


class CountingPublisher:
    """Counts what the relay hands over, per topic and event id."""

    def __init__(self) -> None:
        self.seen: Counter[tuple[str, str]] = Counter()

    async def publish(self, topic: str, events: Sequence[Mapping[str, Any]], *, partition_key: str) -> None:
        for event in events:
            self.seen[(topic, str(event["id"]))] += 1

    async def aclose(self) -> None:
        return None


def _seed(service: TaskService) -> None:
    for start in range(0, TASKS, 50):
        service.add_many(
            USER, [TaskDraft(title=f"Bench {i}", tags=["bench"]) for i in range(start, start + 50)]
        )
    for start in range(0, OTHERS, 50):
        service.add_many(
            USER, [TaskDraft(title=f"Other {i}", tags=["other"]) for i in range(start, start + 50)]
        )


async def _publish_all(engine: Engine, publisher: CountingPublisher) -> int:
    relay = OutboxRelay(engine, publisher, batch_size=200)
    sent = 0
    while (count := await relay.run_once()) > 0:
        sent += count
    return sent


def run(url: str) -> dict[str, Any]:
    engine = make_engine(url)
    try:
        migrate(engine)
        service = TaskService(UnitOfWorkFactory(engine))
        _seed(service)
        asyncio.run(_publish_all(engine, CountingPublisher()))  # the seed's events out of the way
        wall, cpu = time.perf_counter(), time.thread_time()
        result = service.change_many(USER, "complete", filter=TaskFilter(tag="bench"), confirm=True)
        batch_s, batch_cpu_s = time.perf_counter() - wall, time.thread_time() - cpu
        publisher = CountingPublisher()
        wall = time.perf_counter()
        published_rows = asyncio.run(_publish_all(engine, publisher))
        publish_s = time.perf_counter() - wall
        with Session(engine) as session:
            rows = session.exec(select(OutboxEvent).where(OutboxEvent.user_id == USER.user_id)).all()
            batch_rows = [r for r in rows if r.payload.get("change_id") == result.change_id]
            pending = sum(1 for r in rows if r.published_at is None)
            done = session.exec(
                select(func.count())
                .select_from(Task)
                .where(Task.owner_id == USER.user_id, col(Task.completed))
            ).one()
        ids = {str(r.id) for r in batch_rows}
        once_each = all(
            publisher.seen[(topic, i)] == 1 for i in ids for topic in ("task-events", "task-updates")
        )
        wall = time.perf_counter()
        undone = service.undo(USER, result.change_id)
        undo_s = time.perf_counter() - wall
        return {
            "database": engine.dialect.name,
            "tasks_completed": len(result.changed),
            "batch_call_s": round(batch_s, 3),
            "batch_call_cpu_s": round(batch_cpu_s, 3),
            "events_in_outbox": len(batch_rows),
            "completion_events": sum(1 for r in batch_rows if r.event_type == "todo.task.completed.v1"),
            "rows_published": published_rows,
            "publish_s": round(publish_s, 3),
            "events_per_s": round(published_rows / publish_s) if publish_s else None,
            "each_published_once_per_topic": once_each,
            "pending_after": pending,
            "completed_in_db": int(done),
            "lost": TASKS - len(ids & {i for (_t, i) in publisher.seen}),
            "undo_s": round(undo_s, 3),
            "undone_tasks": len(undone.changed),
        }
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.batch", description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--database-url", help="PostgreSQL URL instead of a fresh devstack database")
    args = parser.parse_args(argv)
    results = []
    with ExitStack() as exits:
        if args.database in ("sqlite", "both"):
            folder = Path(exits.enter_context(tempfile.TemporaryDirectory()))
            results.append(run(f"sqlite:///{folder / 'bench.db'}"))
        if args.database in ("postgres", "both"):
            url = args.database_url
            if url is None:
                from benchmarks.stack import stack_with_fresh_database

                _stack, url = stack_with_fresh_database(exits)
            results.append(run(url))
    for figures in results:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
