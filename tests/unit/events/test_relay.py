"""The outbox relay on SQLite with a recording publisher: what goes where, and what stays."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest
from sqlmodel import Session, select

from events.cli import main
from events.contracts import SOURCE, cloud_event, target_topics
from events.ports import PublishError
from events.publishers import is_permanent
from events.relay import OutboxRelay
from tasks.inputs import TaskDraft
from tasks.models import OutboxEvent
from tasks.service import Actor
from tests.unit.events.support import RecordingPublisher
from todo_agent.bootstrap import Container

ALICE, BOB = Actor("alice"), Actor("bob")


def _rows(container: Container) -> list[OutboxEvent]:
    with Session(container.engine) as session:
        return list(session.exec(select(OutboxEvent).order_by(OutboxEvent.id)).all())  # type: ignore[arg-type]


def test_a_task_event_becomes_a_cloudevent_whose_id_is_the_outbox_row_id(
    make_container: Callable[..., Container],
) -> None:
    container = make_container("api")
    view = container.tasks.add(ALICE, TaskDraft(title="Buy milk"))
    row = _rows(container)[0]
    event = cloud_event(row)
    assert event["id"] == str(row.id)
    assert event["type"] == "todo.task.created.v1"
    assert event["source"] == SOURCE
    assert event["specversion"] == "1.0"
    assert event["data"]["task_id"] == view.id and event["data"]["schema_version"] == 1
    assert target_topics(row) == ("task-events", "task-updates")


async def test_pending_rows_go_to_both_task_topics_keyed_by_user_and_are_marked_sent(
    make_container: Callable[..., Container], publisher: RecordingPublisher
) -> None:
    container = make_container("api")
    container.tasks.add(ALICE, TaskDraft(title="a1"))
    container.tasks.add(BOB, TaskDraft(title="b1"))
    container.tasks.add(ALICE, TaskDraft(title="a2"))
    relay = OutboxRelay(container.engine, publisher)

    assert await relay.run_once() == 3
    assert await relay.run_once() == 0

    assert publisher.ids("task-events") == publisher.ids("task-updates")
    assert sorted(publisher.ids("task-events")) == ["1", "2", "3"]
    by_key = {(t, key): [e["id"] for e in evs] for t, evs, key in publisher.calls}
    assert by_key[("task-events", "alice")] == ["1", "3"]  # one user's events in order, one request
    assert by_key[("task-events", "bob")] == ["2"]
    assert all(row.published_at is not None and row.attempts == 1 for row in _rows(container))
    assert relay.metrics()["backlog"] == 0 and relay.published == 3


async def test_rows_of_other_topics_go_to_their_own_topic_only(
    make_container: Callable[..., Container], publisher: RecordingPublisher
) -> None:
    container = make_container("api")
    with container.uow() as uow:
        uow.session.add(OutboxEvent(topic="reminders", event_type="todo.reminder.due.v1", user_id="alice",
                                    task_id=1, payload={"user_id": "alice"}))  # fmt: skip
        uow.session.commit()
    await OutboxRelay(container.engine, publisher).run_once()
    assert [t for t, _, _ in publisher.calls] == ["reminders"]


async def test_a_down_sidecar_leaves_rows_pending_with_the_error_and_they_go_out_later(
    make_container: Callable[..., Container], publisher: RecordingPublisher
) -> None:
    container = make_container("api")
    container.tasks.add(ALICE, TaskDraft(title="a1"))
    relay = OutboxRelay(container.engine, publisher, poll_interval=0.05, max_backoff=0.2)
    publisher.fail = True
    async with relay.running(container.uow):
        await asyncio.sleep(0.3)
        metrics = relay.metrics()
        assert metrics["backlog"] == 1 and metrics["failures"] >= 1
        assert metrics["oldest_pending_age_s"] > 0
        assert "sidecar down" in (_rows(container)[0].last_error or "")
        publisher.fail = False
        for _ in range(50):
            if relay.metrics()["backlog"] == 0:
                break
            await asyncio.sleep(0.05)
    row = _rows(container)[0]
    assert row.published_at is not None and row.last_error is None and row.attempts >= 2
    assert publisher.ids("task-events") == ["1"]


async def test_a_commit_wakes_the_relay_without_waiting_for_the_poll(
    make_container: Callable[..., Container], publisher: RecordingPublisher
) -> None:
    container = make_container("api")
    relay = OutboxRelay(container.engine, publisher, poll_interval=30)
    async with relay.running(container.uow):
        await asyncio.sleep(0.05)
        await asyncio.to_thread(container.tasks.add, ALICE, TaskDraft(title="now"))
        for _ in range(100):
            if publisher.calls:
                break
            await asyncio.sleep(0.01)
    assert publisher.ids("task-updates") == ["1"]


class RefusingPublisher(RecordingPublisher):
    """Dapr answering 400 for any request that carries one of ``poison`` (event ids)."""

    def __init__(self, poison: set[str]) -> None:
        super().__init__()
        self.poison = poison

    async def publish(self, topic: str, events: Sequence[Mapping[str, Any]], *, partition_key: str) -> None:
        if any(e["id"] in self.poison for e in events):
            raise PublishError("Dapr refused to publish: 400 ERR_PUBSUB_CLOUD_EVENTS_SER", permanent=True)
        await super().publish(topic, events, partition_key=partition_key)


async def test_a_row_refused_for_good_is_marked_failed_and_the_rows_after_it_still_go_out(
    make_container: Callable[..., Container], capsys: pytest.CaptureFixture[str]
) -> None:
    container = make_container("api")
    for title in ("a1", "a2", "a3"):
        container.tasks.add(ALICE, TaskDraft(title=title))
    publisher = RefusingPublisher({"2"})
    relay = OutboxRelay(container.engine, publisher)

    assert await relay.run_once() == 3  # the batch is refused; row by row, only "2" is to blame
    assert await relay.run_once() == 0  # nothing pending: "2" is not retried

    assert publisher.ids("task-events") == ["1", "3"]  # alice's partition is not blocked
    rows = {str(row.id): row for row in _rows(container)}
    assert rows["2"].failed_at is not None and rows["2"].published_at is None
    assert "400" in (rows["2"].last_error or "")
    assert all(rows[i].published_at is not None and rows[i].failed_at is None for i in ("1", "3"))
    metrics = relay.metrics()
    assert metrics["backlog"] == 0 and metrics["failed"] == 1 and metrics["last_failed"]["id"] == 2
    assert main(["tail", "--once"], container.settings) == 0
    tailed = {e["id"]: e for e in map(json.loads, capsys.readouterr().out.splitlines())}
    assert tailed["2"]["failed"] is True and "400" in tailed["2"]["last_error"]
    assert tailed["1"]["failed"] is False and tailed["1"]["published"] is True


def test_only_answers_about_the_message_itself_are_permanent() -> None:
    assert is_permanent(400) and is_permanent(403) and is_permanent(413)
    assert not any(is_permanent(code) for code in (404, 408, 429, 500, 503))
