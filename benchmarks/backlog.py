"""How the outbox relay drains a backlog, and whether new writes wait behind it.

    python -m benchmarks.backlog                        # 200,000 rows of 1,000 users
    python -m benchmarks.backlog --rows 20000 --steady-seconds 10

The real relay process (``events.relay_process.RelayProcess``, as the Dapr roles run it)
publishes through a real daprd to the devstack's Kafka, on a fresh PostgreSQL database. The
shared Kafka stays up (other sessions use it): the outage is played by stopping the relay
while rows pile up, which leaves them pending exactly as failed publishes would. The rows go
to a topic of this run's own (``bench-backlog-<hex>``, deleted at the end), never to
``task-events``: the devstack's consumer groups start from the oldest offset, so 200,000 task
events there would be read by every later test session. A row is an outbox row as a task's
``created`` event writes it (the payload of a real one), inserted in bulk for the backlog.

1. Steady state: with the relay running, this process commits one row per transaction as fast
   as it can for ``--steady-seconds``; the relay's publish rate and each row's lag (its
   ``published_at - created_at``).
2. Backlog: the relay stops; ``--rows`` rows of ``--users`` users are inserted (5,000 per
   transaction); the relay starts again and drains them. Meanwhile, every 0.5 s, a user without
   a backlog writes a row (``fresh``), and once a backlogged user does (``behind``): how long
   each waits (its ``published_at - created_at``). Also the drain rate and the relay process's
   peak memory (``VmHWM``) and resident memory during the drain.

The backlog is read from the database (``events.relay.outbox_gauges``, as ``GET /metrics``
does); what the relay counted and timed (rows published, where a round's time goes) from the
relay process's Prometheus metrics (``RelayProcess.prometheus``), between two scrapes.

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import ColumnElement, Engine, Table, select

from benchmarks.stack import stack_with_fresh_database
from events.relay import outbox_gauges
from events.relay_process import RelayProcess, RelaySettings
from observability.scrape import Scrape
from tasks.db import make_engine, migrate
from tasks.inputs import TaskDraft
from tasks.models import OutboxEvent
from tasks.service import Actor, TaskService
from tasks.unit_of_work import UnitOfWorkFactory
from todo_agent.bootstrap import sidecar_address
from todo_agent.settings import Settings

OUTBOX: Final[Table] = OutboxEvent.__table__  # type: ignore[attr-defined]
BATCH: Final = 5_000
FRESH_EVERY: Final = 0.5


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.backlog", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows in the backlog")
    parser.add_argument("--users", type=int, default=1_000, help="users the backlog's rows belong to")
    parser.add_argument("--steady-seconds", type=float, default=15.0)
    args = parser.parse_args(argv)
    with ExitStack() as exits:
        stack, pg_url = stack_with_fresh_database(exits)
        topic = _own_topic(stack.cfg.kafka_brokers, exits)
        settings = _sidecar_settings(stack, pg_url, exits)
        engine = make_engine(pg_url)
        exits.callback(engine.dispose)
        migrate(engine)
        uow = UnitOfWorkFactory(engine)
        payload = _real_payload(uow)
        relay = RelayProcess(
            RelaySettings(
                database_url=pg_url, log_level="WARNING", sidecar=sidecar_address(settings),
                pubsub=settings.pubsub_name,
            )
        )  # fmt: skip
        relay.start()
        exits.callback(relay.stop)
        uow.after_commit.append(relay.wake)
        result: dict[str, Any] = {"rows": args.rows, "users": args.users, "topic": topic}
        result["steady"] = steady_state(uow, relay, topic, payload, args.steady_seconds)
        report("steady state", result["steady"])
        relay.stop()
        result["pile"] = pile_up(uow, topic, payload, args.rows, args.users)
        report("backlog written", result["pile"])
        relay.start()
        result["drain"] = drain(uow, relay, topic, payload, args.rows)
        report("drain", result["drain"])
    print(json.dumps(result))
    return 0


# -- set-up ----------------------------------------------------------------------------------
def _own_topic(brokers: str, exits: ExitStack) -> str:
    """A topic of this run's own, deleted at the end."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    from devstack.config import TOPIC_PARTITIONS

    topic = f"bench-backlog-{secrets.token_hex(4)}"
    admin = KafkaAdminClient(bootstrap_servers=brokers, request_timeout_ms=15000)
    exits.callback(admin.close)
    admin.create_topics([NewTopic(topic, num_partitions=TOPIC_PARTITIONS, replication_factor=1)])
    exits.callback(admin.delete_topics, [topic])
    return topic


def _sidecar_settings(stack: Any, pg_url: str, exits: ExitStack) -> Settings:
    """A daprd for the relay to publish through (stopped at the end), and the relay's settings."""
    from devstack.components import render
    from devstack.procs import free_port
    from devstack.sidecar import start_sidecar

    folder = Path(exits.enter_context(tempfile.TemporaryDirectory(prefix="bench-backlog-")))
    resources = render(folder / "resources", kafka_brokers=stack.cfg.kafka_brokers, pg_url=pg_url)
    sidecar = start_sidecar(
        app_id=f"todo-backlog-bench-{pg_url[-8:]}", app_port=None, resources_path=resources.path,
        config=resources.config, scheduler_address=stack.cfg.scheduler_address,
        log_dir=folder / "logs", extra_env=dict(resources.env),
    )  # fmt: skip
    exits.callback(sidecar.stop)
    return Settings(
        database_url=pg_url, data_dir=folder, port=free_port(),
        dapr_http_port=sidecar.http_port, dapr_grpc_port=sidecar.grpc_port,
    )  # fmt: skip


def _real_payload(uow: UnitOfWorkFactory) -> dict[str, Any]:
    """The payload of a real ``created`` event (its row then marked sent, so it is not published)."""
    TaskService(uow).add(Actor("backlog-template", "UTC"), TaskDraft(title="Pay the electricity bill"))
    with uow.engine.begin() as connection:
        row_id, payload = connection.execute(select(OUTBOX.c.id, OUTBOX.c.payload)).one()
        connection.execute(
            OUTBOX.update().where(OUTBOX.c.id == row_id).values(published_at=datetime.now(UTC))
        )
    return dict(payload)


def _row(topic: str, user: str, number: int, payload: dict[str, Any]) -> OutboxEvent:
    return OutboxEvent(
        topic=topic, event_type="todo.task.created.v1", user_id=user, task_id=number,
        payload={**payload, "user_id": user, "task_id": number}, created_at=datetime.now(UTC),
    )  # fmt: skip


def _write_one(uow: UnitOfWorkFactory, row: OutboxEvent) -> int:
    with uow() as unit:
        unit.insert([row])
        unit.commit()
    assert row.id is not None
    return row.id


# -- phases --------------------------------------------------------------------------------
def steady_state(
    uow: UnitOfWorkFactory, relay: RelayProcess, topic: str, payload: dict[str, Any], seconds: float
) -> dict[str, Any]:
    before = _scrape(relay)
    started = time.perf_counter()
    first = last = _write_one(uow, _row(topic, "steady-0", 0, payload))
    written = 1
    while time.perf_counter() - started < seconds:
        last = _write_one(uow, _row(topic, f"steady-{written % 50}", written, payload))
        written += 1
    wrote_for = time.perf_counter() - started
    _wait_drained(uow.engine, timeout=120)
    run = _scrape(relay).minus(before)
    lags = _waits(uow.engine, OUTBOX.c.id.between(first, last) & (OUTBOX.c.topic == topic))
    return {
        "written": written,
        "write_rate_per_s": round(written / wrote_for, 1),
        "publish_rate_per_s": round(_published(run) / (time.perf_counter() - started), 1),
        "lag_ms": _summary(lags),
        "round_ms": _rounds(run),
        "relay_rss_mb": _memory(relay)["rss_mb"],
    }


def pile_up(
    uow: UnitOfWorkFactory, topic: str, payload: dict[str, Any], rows: int, users: int
) -> dict[str, Any]:
    started = time.perf_counter()
    for first in range(0, rows, BATCH):
        batch = [
            _row(topic, f"backlog-{n % users}", n, payload) for n in range(first, min(rows, first + BATCH))
        ]
        with uow() as unit:
            unit.insert(batch)
            unit.commit()
    return {"rows": rows, "seconds": round(time.perf_counter() - started, 1)}


def drain(
    uow: UnitOfWorkFactory, relay: RelayProcess, topic: str, payload: dict[str, Any], rows: int
) -> dict[str, Any]:
    started = time.perf_counter()
    before = _scrape(relay)
    fresh: list[int] = []
    behind: list[int] = []
    rss: list[float] = []
    backlog = rows
    while backlog > 0:
        fresh.append(_write_one(uow, _row(topic, f"fresh-{len(fresh)}", len(fresh), payload)))
        if not behind and time.perf_counter() - started > 1.0:
            behind.append(_write_one(uow, _row(topic, "backlog-0", rows + 1, payload)))
        rss.append(_memory(relay)["rss_mb"])
        time.sleep(FRESH_EVERY)
        backlog = outbox_gauges(uow.engine)[0]
        if time.perf_counter() - started > 3600:
            raise SystemExit(f"the relay did not drain the backlog in an hour ({backlog} rows left)")
    seconds = time.perf_counter() - started
    run = _scrape(relay).minus(before)
    waits = _waits(uow.engine, OUTBOX.c.id.in_(fresh))
    return {
        "seconds": round(seconds, 1),
        "rate_per_s": round(_published(run) / seconds, 1),
        "fresh_writes": len(fresh),
        "fresh_wait_ms": _summary(waits),
        "behind_wait_ms": round(_waits(uow.engine, OUTBOX.c.id.in_(behind))[0], 1) if behind else None,
        "relay_peak_rss_mb": _memory(relay)["peak_mb"],
        "relay_rss_mb": {"first": rss[0], "max": max(rss), "last": rss[-1]},
        "round_ms": _rounds(run),
    }


def _waits(engine: Engine, rows: ColumnElement[bool]) -> list[float]:
    """Each sent row's wait in ms, from written (``created_at``) to marked sent (``published_at``)."""
    with engine.connect() as connection:
        sent = select(OUTBOX.c.created_at, OUTBOX.c.published_at).where(
            rows, OUTBOX.c.published_at.is_not(None)
        )
        found = connection.execute(sent).all()
    return [(published - created).total_seconds() * 1000 for created, published in found]


def _summary(waits: list[float]) -> dict[str, Any]:
    ordered = sorted(waits)
    if not ordered:
        return {"count": 0}
    return {
        "count": len(ordered),
        "p50": round(statistics.median(ordered), 1),
        "p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 1),
        "max": round(ordered[-1], 1),
    }


def _scrape(relay: RelayProcess) -> Scrape:
    """The relay process's metrics; a relay that is still starting (or busy in a long round on a
    loaded machine) is asked again for up to a minute."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return Scrape.of(relay.prometheus().decode())
        except RuntimeError:
            if time.monotonic() > deadline or not relay.alive():
                raise


def _published(run: Scrape) -> float:
    return run.value("todo_relay_published_total") or 0.0


def _rounds(run: Scrape) -> dict[str, Any]:
    """Where a successful round's time went (p50 / p95 ms per phase, estimated from the
    histogram's buckets) and the rows a round sent on average."""

    def ms(value: float | None) -> float | None:
        return round(value * 1000, 2) if value is not None else None

    phases = {
        phase: {f"p{q}": ms(run.quantile("todo_relay_round_phase_seconds", q / 100, phase=phase))
                for q in (50, 95)}
        for phase in ("claim", "publish", "mark")
    }  # fmt: skip
    rows = run.mean("todo_relay_round_rows")
    return {**phases, "rounds": run.value("todo_relay_round_rows_count"),
            "rows_mean": round(rows, 1) if rows is not None else None}  # fmt: skip


def _wait_drained(engine: Engine, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while outbox_gauges(engine)[0] > 0 and time.monotonic() < deadline:
        time.sleep(0.2)


def _memory(relay: RelayProcess) -> dict[str, float]:
    """The relay process's resident and peak resident memory (MB), from ``/proc``."""
    values = {}
    for line in Path(f"/proc/{relay.pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = round(int(value.split()[0]) / 1024, 1)
    return {"rss_mb": values["VmRSS"], "peak_mb": values["VmHWM"]}


def report(phase: str, figures: dict[str, Any]) -> None:
    print(f"{phase}: {json.dumps(figures)}", file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault("TODO_LOG_LEVEL", "WARNING")
    raise SystemExit(main())
