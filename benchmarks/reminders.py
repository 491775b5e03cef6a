"""Reminder firing through the real stack: N reminders due within one minute, fired by Dapr jobs.

    python -m benchmarks.reminders --count 10000
    python -m benchmarks.reminders --count 1000 --window 60 --users 50

It brings up PostgreSQL, Kafka and the Dapr scheduler itself (what it started stops at the
end), creates a fresh database, and serves the api role's reminder parts (after-commit job
scheduling, the reconciler, ``POST /job/{name}``) beside a daprd. N tasks with reminders
spread evenly over ``--window`` seconds are created through the use cases; each commit
schedules its job (``reminder-task-<id>``) through daprd's Jobs API. Each job calls back at
its time and the firing check writes one ``ReminderDue`` to the outbox.

A reminder's fire time is its ``ReminderDue`` outbox row's ``created_at`` (in the firing
transaction). Reported: ``early`` (fired before its time, must be 0), ``missing`` (never
fired), ``duplicates`` (fired more than once), lateness percentiles, ``schedule_per_s`` (tasks
created and jobs scheduled per second), and how many job callbacks arrived in all
(``deliveries``; a redelivered job is absorbed by the once-only check). The last line is one
JSON object, with the CPU per reminder that firing cost (``firing_cpu_ms_per_reminder``: this
process, its daprd, and the shared scheduler, from when every job was scheduled to the end) and the
load average at the start, when every job was scheduled, and at the end (``load``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, ExitStack, contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from sqlalchemy import func
from sqlmodel import Session, select

from benchmarks.stack import stack_with_fresh_database
from devstack.appserver import serve_in_thread
from devstack.procs import free_port
from events.reminders import firing
from events.reminders.scheduling import ReminderScheduling, task_id_of_job
from events.reminders.wiring import reminder_jobs
from tasks.clock import as_utc, utc_now
from tasks.inputs import TaskDraft
from tasks.models import OutboxEvent, Task
from tasks.service import Actor
from todo_agent.api import create_app
from todo_agent.bootstrap import Container, bootstrap
from todo_agent.settings import Settings


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def say(message: str) -> None:
    print(f"[reminders] {message}", file=sys.stderr, flush=True)


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU of a process on this machine, all its threads (None: not readable)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


@contextmanager
def stack_settings(exit_stack: ExitStack, app_port: int, pids: dict[str, int | None]) -> Iterator[Settings]:
    """PostgreSQL, Kafka, the scheduler and a daprd for the app at ``app_port``; ``pids`` gets
    the pids of daprd and the scheduler (shared with whatever else uses the stack)."""

    from devstack.components import render
    from devstack.sidecar import start_sidecar

    stack, pg_url = stack_with_fresh_database(exit_stack)
    with tempfile.TemporaryDirectory(prefix="bench-reminders-") as folder:
        resources = render(
            Path(folder) / "resources", kafka_brokers=stack.cfg.kafka_brokers, pg_url=pg_url,
            subscriptions=False,
        )  # fmt: skip
        sidecar = start_sidecar(
            app_id=f"todo-api-bench-{pg_url[-8:]}", app_port=app_port, resources_path=resources.path,
            config=resources.config, scheduler_address=stack.cfg.scheduler_address,
            log_dir=stack.cfg.log_dir / "bench", extra_env=dict(resources.env), log_level="warn",
        )  # fmt: skip
        pids["daprd"], pids["scheduler"] = sidecar.pid, stack.scheduler.pidfile.read()
        try:
            yield Settings(
                database_url=pg_url, data_dir=Path(folder), port=app_port,
                dapr_http_port=sidecar.http_port, dapr_grpc_port=sidecar.grpc_port,
            )  # fmt: skip
        finally:
            sidecar.stop()


def reminder_app(container: Container, deliveries: list[tuple[str, datetime]]) -> FastAPI:
    """The api role's reminder parts only (no relay: ``ReminderDue`` rows stay in this database)."""

    def count_callbacks(app: FastAPI, _container: Container) -> None:
        @app.middleware("http")
        async def counter(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
            if request.url.path.startswith("/job/"):
                deliveries.append((request.url.path.rsplit("/", 1)[-1], utc_now()))
            return await call_next(request)

    def job_callbacks(app: FastAPI, c: Container) -> None:
        assert c.firing is not None
        app.state.edge.sidecar_only(firing.JOB_ROUTE_PREFIX, prefix=True)
        app.include_router(firing.router(c.firing))

    def jobs_running(c: Container) -> AbstractAsyncContextManager[Any]:
        assert c.reminders is not None
        return reminder_jobs(c.reminders, c.uow, grace=timedelta(minutes=c.settings.reminder_grace_minutes))

    return create_app(container, extensions=[count_callbacks, job_callbacks], lifespans=[jobs_running])


def create_reminders(container: Container, count: int, users: int, start: datetime, window: float) -> None:
    step = window / count

    def add(i: int) -> None:
        actor = Actor(user_id=f"bench-{i % users}", timezone="UTC")
        at = start + timedelta(seconds=i * step)
        container.tasks.add(actor, TaskDraft(title=f"bench reminder {i}", remind_at=at))

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(add, range(count)))


def drain(scheduling: ReminderScheduling) -> None:
    assert scheduling.loop is not None
    asyncio.run_coroutine_threadsafe(scheduling.drain(), scheduling.loop).result()


def fired_rows(container: Container) -> list[tuple[int, datetime]]:
    with Session(container.engine) as session:
        rows = session.exec(
            select(OutboxEvent.task_id, OutboxEvent.created_at).where(OutboxEvent.topic == "reminders")
        ).all()
    return [(task_id, as_utc(at)) for task_id, at in rows if task_id is not None]


def fired_count(container: Container) -> int:
    """How many have fired (a COUNT: polling must not load rows in the process being measured)."""
    with Session(container.engine) as session:
        return int(session.exec(select(func.count()).where(OutboxEvent.topic == "reminders")).one())


def reminder_times(container: Container) -> dict[int, datetime]:
    with Session(container.engine) as session:
        rows = session.exec(select(Task.id, Task.remind_at)).all()
    return {task_id: as_utc(at) for task_id, at in rows if task_id is not None and at is not None}


def load_average() -> float | None:
    """The 1-minute load average (the machine is shared: figures go with it)."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def measure(
    count: int, window: float, users: int, lead: float | None, shards: int | None = None
) -> dict[str, Any]:
    deliveries: list[tuple[str, datetime]] = []
    loads = [load_average()]
    with ExitStack() as exit_stack:
        pids: dict[str, int | None] = {}
        settings = exit_stack.enter_context(stack_settings(exit_stack, free_port(), pids))
        container = bootstrap("api", settings)
        if shards is not None:  # jobs scheduled this many at a time (the product's default otherwise)
            assert container.jobs is not None
            container.reminders = ReminderScheduling(container.jobs, container.uow, shards=shards)
        server = serve_in_thread(reminder_app(container, deliveries), settings.port)
        exit_stack.callback(server.stop)
        scheduling = container.reminders
        assert scheduling is not None
        lead = lead if lead is not None else 15 + count / 100
        began = time.monotonic()
        start = utc_now() + timedelta(seconds=lead)
        say(f"creating {count} reminders due from {start:%H:%M:%S} over {window:.0f}s ...")
        create_reminders(container, count, users, start, window)
        say(f"created in {time.monotonic() - began:.1f}s")
        drain(scheduling)
        schedule_seconds = time.monotonic() - began
        scheduled_in_time = utc_now() <= start
        # CPU from here to the end is firing's (and the reconciler's, every 30 s): the app's
        # process, its daprd, and the scheduler (shared: other users of the stack count too)
        cpu_before = {"app": time.process_time()} | {name: cpu_seconds(pid) for name, pid in pids.items()}
        say(f"created and scheduled in {schedule_seconds:.1f}s ({count / schedule_seconds:.0f}/s)")
        loads.append(load_average())
        if utc_now() > start:
            say("warning: scheduling took longer than the lead time; early reminders were scheduled late")
        end = start + timedelta(seconds=window)
        deadline = end + timedelta(seconds=120)
        while utc_now() < deadline:
            done = fired_count(container)
            if done >= count and utc_now() > end + timedelta(seconds=5):
                break
            time.sleep(1)
        time.sleep(2)  # late duplicates, if any
        loads.append(load_average())
        cpu_after = {"app": time.process_time()} | {name: cpu_seconds(pid) for name, pid in pids.items()}
        fired, due = fired_rows(container), reminder_times(container)
    by_task: dict[int, list[datetime]] = defaultdict(list)
    for task_id, at in fired:
        by_task[task_id].append(at)
    late_ms = [(min(ats) - due[t]).total_seconds() * 1000 for t, ats in by_task.items()]
    first_call: dict[int, datetime] = {}
    for name, at in deliveries:
        called = task_id_of_job(name)
        if called is not None and called not in first_call:
            first_call[called] = at
    arrival_ms = [(at - due[t]).total_seconds() * 1000 for t, at in first_call.items() if t in due]
    if late_ms:
        deciles = ", ".join(f"p{q}={percentile(late_ms, q):.0f}" for q in (10, 50, 90, 95, 99))
        say(f"lateness ms: {deciles}")
        slow = sorted((due[t], (min(ats) - due[t]).total_seconds()) for t, ats in by_task.items())
        say("slowest by due time: " + ", ".join(f"{d:%S.%f}+{x:.2f}" for d, x in slow if x > 0.3)[:300])
    return {
        "count": count,
        "early": sum(1 for t, ats in by_task.items() for at in ats if at < due[t]),
        "missing": count - len(by_task),
        "duplicates": len(fired) - len(by_task),
        "p50_late_ms": round(percentile(late_ms, 50), 1) if late_ms else None,
        "p99_late_ms": round(percentile(late_ms, 99), 1) if late_ms else None,
        "max_late_ms": round(max(late_ms), 1) if late_ms else None,
        "schedule_per_s": round(count / schedule_seconds, 1),
        "deliveries": len(deliveries),
        "p50_callback_late_ms": round(percentile(arrival_ms, 50), 1) if arrival_ms else None,
        "p99_callback_late_ms": round(percentile(arrival_ms, 99), 1) if arrival_ms else None,
        "window_s": window,
        "lead_s": round(lead, 1),
        "scheduled_before_due": scheduled_in_time,
        "shards": scheduling.shards,
        "load": loads,  # at the start, when every job was scheduled, at the end
        "firing_cpu_ms_per_reminder": {
            name: round((after - before) * 1000 / count, 2)
            for name, after in cpu_after.items()
            if after is not None and (before := cpu_before.get(name)) is not None
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.reminders", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--count", type=int, default=1000, help="reminders to schedule (default 1000)")
    parser.add_argument(
        "--window", type=float, default=60.0, help="seconds they are spread over (default 60)"
    )
    parser.add_argument("--users", type=int, default=100, help="distinct owners (default 100)")
    parser.add_argument(
        "--lead", type=float, default=None,
        help="seconds from the start to the first due time (default 15 + count/100); long enough for "
        "every job to be scheduled before the first is due, it measures firing apart from scheduling",
    )  # fmt: skip
    parser.add_argument(
        "--shards", type=int, default=None, help="jobs scheduled at a time (default: the product's)"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("TODO_LOG_LEVEL", "WARNING")
    logging.basicConfig(level=logging.WARNING)
    result = measure(args.count, args.window, args.users, args.lead, args.shards)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
