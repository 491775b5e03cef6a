"""A row the real daprd refuses for good is marked failed; its user's other rows still reach Kafka.

The api's pub/sub component grants the app ``publishingScopes`` for its three topics only, as a
locked-down deployment would. A row for any other topic (here ``task-archive``: what a newer
release could write before its topic is granted) is answered by daprd with 403
``ERR_PUBSUB_FORBIDDEN`` ("topic ... is not allowed for app id ...": Dapr 1.18.1
``pkg/runtime/pubsub/publisher`` returns ``NotAllowedError``, which ``pkg/api/http`` maps to
``PublishForbidden``, HTTP 403, on both the publish and the bulk publish API). The same request
gets the same answer every time, so the relay must not retry it, nor hold back the rows after it.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from kafka import KafkaConsumer, TopicPartition
from sqlmodel import Session, col, select

from auth.tokens import JwtVerifier
from devstack.components import RenderedResources, render
from devstack.procs import wait_until
from events.contracts import cloud_event
from tasks.clock import utc_now
from tasks.events import REMINDERS, TASK_EVENTS, TASK_UPDATES
from tasks.inputs import TaskChanges, TaskDraft
from tasks.models import OutboxEvent
from tasks.service import Actor, TaskService
from tasks.unit_of_work import UnitOfWorkFactory
from tests.conftest import JWT_SECRET, service_on
from tests.integration.events.support import (
    BROADCAST_COMPONENT,
    TODO_AGENT,
    RoleLauncher,
    launching,
    scrape,
    subscriptions,
)
from tests.integration.kafka_support import end_offsets

pytestmark = pytest.mark.integration

REFUSED_TOPIC = "task-archive"
GRANTED = ",".join((TASK_EVENTS, TASK_UPDATES, REMINDERS))


@pytest.fixture
def api_id(session_id: str) -> str:
    return f"todo-api-refusals{session_id}"


@pytest.fixture
def scoped_resources(
    kafka_brokers: str, pg_url: str, api_id: str, tmp_path_factory: pytest.TempPathFactory
) -> RenderedResources:
    """The committed components, with the api allowed to publish to its own topics only."""
    resources = render(
        tmp_path_factory.mktemp("dapr-refusals"), kafka_brokers=kafka_brokers, pg_url=pg_url,
        subscriptions=False,
        extra={
            "subscriptions.yaml": subscriptions(api=api_id, recurrence="none", audit="none"),
            "kafka-pubsub-broadcast.yaml": BROADCAST_COMPONENT.format(brokers=kafka_brokers, api=api_id),
        },
    )  # fmt: skip
    pubsub = resources.path / "kafka-pubsub.yaml"
    text = pubsub.read_text()
    anchor = "    - name: disableTls\n"
    assert anchor in text, "the committed kafka-pubsub.yaml changed shape"
    scope = f'    - name: publishingScopes\n      value: "{api_id}={GRANTED}"\n'
    pubsub.write_text(text.replace(anchor, scope + anchor))
    return resources


@pytest.fixture
def launcher(
    scoped_resources: RenderedResources, pg_url: str, sidecar_factory: Any, stack_log_dir: Path
) -> Iterator[RoleLauncher]:
    with launching(scoped_resources, pg_url, sidecar_factory, stack_log_dir) as launcher:
        yield launcher


@pytest.fixture
def service(pg_url: str) -> Iterator[tuple[TaskService, UnitOfWorkFactory]]:
    yield from service_on(pg_url, utc_now)


def refused_row(uow: UnitOfWorkFactory, user: str, task_id: int) -> int:
    """An outbox row for a topic the app was never granted, written like any other."""
    row = OutboxEvent(
        topic=REFUSED_TOPIC, event_type="todo.task.archived.v1", user_id=user, task_id=task_id,
        payload={"schema_version": 1, "user_id": user, "task_id": task_id, "event_type": "archived"},
    )  # fmt: skip
    with Session(uow.engine) as session:
        session.add(row)
        session.commit()
        assert row.id is not None
        return row.id


def backlog(url: str) -> float | None:
    return scrape(url).value("todo_outbox_backlog")


def events_until(
    brokers: str, offsets: dict[TopicPartition, int], user: str, last_id: str, *, wait: float = 30
) -> list[str]:
    """Ids of ``user``'s events after ``offsets``, in partition order, up to ``last_id`` (one
    user = one partition key = one partition, so everything before it is there by then)."""
    consumer = KafkaConsumer(bootstrap_servers=brokers, enable_auto_commit=False)
    ids: list[str] = []
    try:
        consumer.assign(list(offsets))
        for tp, offset in offsets.items():
            consumer.seek(tp, offset)
        deadline = time.monotonic() + wait
        while last_id not in ids and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=300).values():
                for record in batch:
                    event = json.loads(record.value)
                    if event.get("data", {}).get("user_id") == user:
                        assert record.key == user.encode(), "the partition key is the user"
                        ids.append(event["id"])
        return ids
    finally:
        consumer.close()


def _without_dapr(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if not k.startswith(("DAPR_", "APP_API_TOKEN"))}


def test_a_row_daprd_forbids_is_failed_and_its_users_rows_before_and_after_it_reach_kafka(
    launcher: RoleLauncher,
    service: tuple[TaskService, UnitOfWorkFactory],
    api_id: str,
    kafka_brokers: str,
    pg_url: str,
    session_id: str,
) -> None:
    tasks, uow = service
    user = Actor(user_id=f"refusals-{session_id}")
    before = {topic: end_offsets(kafka_brokers, topic) for topic in (TASK_EVENTS, TASK_UPDATES)}

    # A backlog written while no relay runs, so one batch holds the refused row and its neighbours.
    first = tasks.add(user, TaskDraft(title="before the refused row"))
    tasks.update(user, first.id, TaskChanges(title="still before it"))
    bad = refused_row(uow, user.user_id, first.id)
    after = tasks.add(user, TaskDraft(title="after the refused row"))
    tasks.complete(user, after.id)
    with Session(uow.engine) as session:
        mine = col(OutboxEvent.user_id) == user.user_id
        rows = list(session.exec(select(OutboxEvent).where(mine).order_by(col(OutboxEvent.id))))
    good = [str(row.id) for row in rows if row.id != bad]
    assert len(good) == 4 and [row.id for row in rows].index(bad) == 2

    api = launcher.start("api", api_id)
    wait_until(lambda: backlog(api.url) == 0, what="the backlog settled", timeout=60)

    # Live: one more write through the api; the relay did not stop or back off at the refusal.
    headers = {"authorization": f"Bearer {JwtVerifier(secret=JWT_SECRET).issue(user.user_id, ttl=600)}"}
    with httpx.Client(base_url=api.url, headers=headers, timeout=30) as http:
        reply = http.post("/api/tasks", json={"title": "written after the refusal"})
        assert reply.status_code == 201, reply.text
    wait_until(lambda: backlog(api.url) == 0, what="the live write published", timeout=30)
    with Session(uow.engine) as session:
        rows = list(session.exec(select(OutboxEvent).where(mine).order_by(col(OutboxEvent.id))))
    by_id = {str(row.id): row for row in rows}
    live = str(rows[-1].id)
    good.append(live)

    refused = by_id[str(bad)]
    assert refused.failed_at is not None and refused.published_at is None
    reason = refused.last_error or ""
    assert "403" in reason and "ERR_PUBSUB_FORBIDDEN" in reason, reason
    assert f"topic {REFUSED_TOPIC} is not allowed for app id {api_id}" in reason, reason
    assert refused.attempts == 1, "a row refused for good is not retried"
    for row_id in good:
        row = by_id[row_id]
        assert row.published_at is not None and row.failed_at is None and row.last_error is None, row_id

    seen = {
        topic: events_until(kafka_brokers, offsets, user.user_id, live) for topic, offsets in before.items()
    }
    for topic, ids in seen.items():
        # Each row once and in order on the user's partition, the refused one never: the row-by-row
        # pass after the refusal publishes only to topics whose batch request had failed.
        assert ids == good, (topic, ids)
        assert str(bad) not in ids

    reported = scrape(api.url)  # the failed row (its reason is in the row, above), no back-off
    assert reported.value("todo_outbox_failed_rows") == 1 and reported.value("todo_outbox_backlog") == 0
    assert reported.value("todo_relay_backoff_seconds") == 0
    assert reported.value("todo_relay_process_restarts_total") == 0

    tail = subprocess.run(
        [TODO_AGENT, "events", "tail", "--once", "--since", str(bad - 1), "--topic", REFUSED_TOPIC],
        env={**_without_dapr(os.environ), "TODO_DATABASE_URL": pg_url, "TODO_TIMEZONE": "UTC"},
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    [line] = [json.loads(line) for line in tail.stdout.splitlines()]
    assert line["id"] == str(bad) and line["failed"] is True and line["published"] is False
    assert "ERR_PUBSUB_FORBIDDEN" in line["last_error"]
    assert {k: v for k, v in line.items() if k in cloud_event(refused)} == cloud_event(refused)
