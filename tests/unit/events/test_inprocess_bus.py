"""The in-process bus gives up on a consumer that keeps asking to retry: dead letter, not a loop."""

from __future__ import annotations

import logging

import pytest

from events.inprocess import InProcessBus
from events.ports import Delivery, Outcome, PublishError, Subscription


def _event(event_id: str) -> dict[str, object]:
    return {"specversion": "1.0", "id": event_id, "source": "test", "type": "todo.task.created.v1",
            "data": {"user_id": "alice"}}  # fmt: skip


async def test_an_event_a_consumer_keeps_retrying_is_dead_lettered_after_bounded_attempts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = InProcessBus(retry_delays=(0.0, 0.0), max_attempts=6)
    calls: list[str] = []

    async def handler(delivery: Delivery) -> Outcome:
        calls.append(delivery.id)
        return Outcome.RETRY if delivery.id == "poison" else Outcome.SUCCESS

    bus.subscribe(Subscription(topic="task-events", route="/r", consumer="audit", handler=handler))
    events = [_event("poison"), _event("next")]

    with pytest.raises(PublishError, match="audit asked to retry event poison"):
        await bus.publish("task-events", events, partition_key="alice")  # 3 attempts: try later
    assert not bus.dead_letters and "next" not in calls
    with caplog.at_level(logging.WARNING, logger="events.inprocess"):
        await bus.publish("task-events", events, partition_key="alice")  # the relay's next round

    assert calls.count("poison") == 6 and calls[-1] == "next"  # bounded, and it no longer blocks
    [letter] = bus.dead_letters
    assert (letter.topic, letter.consumer, letter.event["id"], letter.attempts) == (
        "task-events-dlq", "audit", "poison", 6,
    )  # fmt: skip
    assert "gave up after 6 attempts" in letter.reason
    assert "event poison on task-events for audit went to task-events-dlq" in caplog.text

    await bus.replay("task-events")  # still poison: bounded again, back in the dead letters
    assert [d.event["id"] for d in bus.dead_letters] == ["poison"] and calls.count("poison") == 12


async def test_a_consumer_that_raises_is_dead_lettered_with_the_error_as_the_reason() -> None:
    bus = InProcessBus(retry_delays=(0.0,), max_attempts=2)

    async def handler(delivery: Delivery) -> Outcome:
        raise RuntimeError("the database is gone")

    bus.subscribe(Subscription(topic="task-events", route="/r", consumer="recurrence", handler=handler))
    await bus.publish("task-events", [_event("x")], partition_key="alice")
    [letter] = bus.dead_letters
    assert "RuntimeError: the database is gone" in letter.reason
