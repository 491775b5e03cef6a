"""``todo-agent events``: tail the outbox; list and replay the embedded default's dead letters."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable

import pytest

from devstack.appserver import AppServer
from events.cli import IdleClose, main
from tasks.inputs import TaskDraft
from tasks.service import Actor
from todo_agent.bootstrap import Container


def test_tail_prints_each_event_with_its_topics(
    make_container: Callable[..., Container], capsys: pytest.CaptureFixture[str]
) -> None:
    container = make_container("api")
    container.tasks.add(Actor("alice"), TaskDraft(title="Buy milk"))
    assert main(["tail", "--once", "--topic", "task-updates"], container.settings) == 0
    [line] = capsys.readouterr().out.splitlines()
    event = json.loads(line)
    assert event["topics"] == ["task-events", "task-updates"] and event["published"] is False
    assert (event["id"], event["type"], event["data"]["task_data"]["title"]) == (
        "1", "todo.task.created.v1", "Buy milk",
    )  # fmt: skip


async def test_dead_letters_of_the_embedded_default_can_be_listed_and_replayed(
    embedded: tuple[Container, AppServer], capsys: pytest.CaptureFixture[str]
) -> None:
    container, server = embedded
    poison = {"specversion": "1.0", "id": "p1", "source": "test", "type": "todo.task.completed.v1",
              "data": {"user_id": "local"}}  # fmt: skip
    assert container.bus is not None  # the embedded default's in-process bus
    await container.bus.publish("task-events", [poison], partition_key="local")
    settings = container.settings.model_copy(update={"port": server.port})

    assert await asyncio.to_thread(main, ["dlq", "list"], settings) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {(d["consumer"], d["event"]["id"]) for d in listed} == {("recurrence", "p1"), ("audit", "p1")}

    assert await asyncio.to_thread(main, ["dlq", "replay"], settings) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert len(container.bus.dead_letters) == 2  # still poison: dropped again


def test_reading_dead_letters_through_dapr_stops_once_idle_never_while_one_is_handled() -> None:
    closed = threading.Event()
    started = time.monotonic()
    idle = IdleClose(closed.set, idle=0.3, first=0.6)
    try:
        time.sleep(0.4)
        assert not closed.is_set(), "the first dead letter gets longer (the consumer group joins)"
        with idle.busy():  # a slow publish: not closed under it, however long it takes
            time.sleep(0.8)
            assert not closed.is_set()
        assert closed.wait(2)
        assert time.monotonic() - started >= 0.4 + 0.8 + 0.3
    finally:
        idle.cancel()
