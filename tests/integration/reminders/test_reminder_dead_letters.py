"""A reminder delivery given up leaves exactly one dead letter on ``reminders-dlq``, however it
was given up and however many senders raced to give it up; replaying it tries that channel again.

The bookkeeping on both databases the product runs on (``backend``: SQLite, then PostgreSQL):
the dead letter is an outbox row written in the transaction that marks the delivery ``failed``.
Then through the real stack (REST -> Dapr job -> Kafka -> notifications role -> webhook server,
the dead letter published by the relay through daprd to Kafka, and ``todo-agent events dlq
replay`` through a sidecar of its own).
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from sqlmodel import Session, col, select

from events.cli import main as events_cli
from events.contracts import cloud_event
from events.reminders.dead_letters import GivenUp
from events.reminders.deliveries import (
    LEASE,
    Claim,
    DeliveryFailed,
    RetryPolicy,
    begin,
    claim_due,
    reopen,
    settle,
)
from tasks.models import Notification, OutboxEvent
from tasks.unit_of_work import UnitOfWorkFactory
from tests.integration.kafka_support import commit_offsets, end_offsets
from tests.integration.reminders.support import ReminderSystem, eventually, kafka_events_since
from tests.integration.reminders.webhook_support import (
    WebhookReceiver,
    deliveries,
    emails_to,
    remind_soon,
    settled,
    someone,
)
from todo_agent.settings import Settings

pytestmark = pytest.mark.integration
T = TypeVar("T")
T0 = datetime(2026, 11, 26, 16, 0, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=3)
GONE = DeliveryFailed("webhook answered HTTP 410", transient=False)
RACERS = 4


# -- the bookkeeping, on both databases -------------------------------------------------------
def first_attempt(uow: UnitOfWorkFactory, user: str) -> Claim:
    row = Notification(event_id=f"ev-{uuid.uuid4().hex[:10]}", channel="webhook", user_id=user, task_id=7,
                       title="Call mom", due_at=T0 + timedelta(hours=1), remind_at=T0)  # fmt: skip
    started = begin(uow, row, now=T0, lease=LEASE)
    assert started.claim is not None
    return started.claim


def the_delivery(uow: UnitOfWorkFactory, claim: Claim) -> Notification:
    with Session(uow.engine) as session:
        return session.exec(select(Notification).where(Notification.id == claim.id)).one()


def dead_letter_rows(uow: UnitOfWorkFactory, user: str) -> list[OutboxEvent]:
    with Session(uow.engine) as session:
        query = select(OutboxEvent).where(OutboxEvent.user_id == user, OutboxEvent.topic == "reminders-dlq")
        return list(session.exec(query.order_by(col(OutboxEvent.id))))


def together(calls: Callable[[], T]) -> list[T]:
    """``calls()`` in ``RACERS`` threads, released at once."""
    start = threading.Barrier(RACERS)

    def racer(_: int) -> T:
        start.wait()
        return calls()

    with ThreadPoolExecutor(max_workers=RACERS) as pool:
        return list(pool.map(racer, range(RACERS)))


def test_a_delivery_given_up_writes_its_dead_letter_with_its_failed_status_once(
    backend: tuple[Any, UnitOfWorkFactory],
) -> None:
    _, uow = backend
    user = someone("alice")
    claim = first_attempt(uow, user)

    assert settle(uow, claim, GONE, now=T0, policy=POLICY) == "failed"
    settle(uow, claim, GONE, now=T0 + timedelta(seconds=1), policy=POLICY)  # the same give-up, late

    [row] = dead_letter_rows(uow, user)
    assert (row.topic, row.event_type, row.task_id) == ("reminders-dlq", "todo.reminder.due.v1", 7)
    given_up = dict(row.payload["dead_letter"])
    assert datetime.fromisoformat(given_up.pop("given_up_at")) == T0
    assert given_up == {
        "event_id": claim.event_id, "consumer": "notifications", "channel": "webhook",
        "error": "webhook answered HTTP 410", "attempts": 1,
    }  # fmt: skip
    assert (row.payload["user_id"], row.payload["task_id"], row.payload["title"]) == (user, 7, "Call mom")
    assert datetime.fromisoformat(row.payload["remind_at"]) == T0
    event = cloud_event(row)
    assert (event["id"], event["type"]) == (claim.event_id, "todo.reminder.due.v1"), "the event held"
    assert the_delivery(uow, claim).status == "failed"


def test_a_give_up_whose_dead_letter_cannot_be_written_leaves_the_delivery_unsettled(
    backend: tuple[Any, UnitOfWorkFactory], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, uow = backend
    user = someone("bob")
    claim = first_attempt(uow, user)

    def refuse(event: Any) -> Any:
        raise RuntimeError("the outbox is unavailable")

    monkeypatch.setattr("tasks.unit_of_work._outbox_row", refuse)
    with pytest.raises(RuntimeError, match="outbox is unavailable"):
        settle(uow, claim, GONE, now=T0, policy=POLICY)
    row = the_delivery(uow, claim)
    assert (row.status, row.attempts, row.last_error) == ("sending", 1, None), "one transaction"
    assert dead_letter_rows(uow, user) == []

    monkeypatch.undo()
    assert settle(uow, claim, GONE, now=T0, policy=POLICY) == "failed"
    assert len(dead_letter_rows(uow, user)) == 1


def test_senders_racing_to_give_up_one_delivery_write_one_dead_letter(
    backend: tuple[Any, UnitOfWorkFactory],
) -> None:
    _, uow = backend
    user = someone("carol")
    claim = first_attempt(uow, user)

    together(lambda: settle(uow, claim, GONE, now=T0, policy=POLICY))

    [row] = dead_letter_rows(uow, user)
    assert row.payload["dead_letter"]["event_id"] == claim.event_id
    assert the_delivery(uow, claim).status == "failed"


def test_replicas_giving_up_a_used_up_delivery_together_write_one_dead_letter(
    backend: tuple[Any, UnitOfWorkFactory],
) -> None:
    _, uow = backend
    user = someone("dave")
    one_attempt = RetryPolicy(max_attempts=1)
    claim = first_attempt(uow, user)  # its sender stops; its lease expires at T0 + LEASE

    rounds = together(lambda: claim_due(uow, now=T0 + LEASE, policy=one_attempt))
    settle(uow, claim, GONE, now=T0 + LEASE, policy=one_attempt)  # the stopped sender, back late

    assert all(claims == [] for claims in rounds), "given up, not claimed"
    [row] = dead_letter_rows(uow, user)
    given_up = row.payload["dead_letter"]
    assert (given_up["event_id"], given_up["channel"], given_up["attempts"]) == (claim.event_id, "webhook", 1)
    assert "stopped before it finished" in given_up["error"]
    delivery = the_delivery(uow, claim)
    assert (delivery.status, delivery.last_error) == ("failed", given_up["error"])


def test_a_replayed_dead_letter_reopens_its_delivery_for_one_attempt_once(
    backend: tuple[Any, UnitOfWorkFactory],
) -> None:
    _, uow = backend
    user = someone("frank")
    claim = first_attempt(uow, user)
    settle(uow, claim, GONE, now=T0, policy=POLICY)
    [first] = dead_letter_rows(uow, user)
    held = GivenUp.model_validate(first.payload["dead_letter"])

    reopened = [c for c in together(lambda: reopen(uow, held, now=T0, lease=LEASE)) if c is not None]
    assert reopen(uow, held, now=T0, lease=LEASE) is None, "the same dead letter replayed again"

    [again] = reopened
    assert (again.id, again.attempts, again.title) == (claim.id, 2, "Call mom")
    row = the_delivery(uow, claim)
    assert (row.status, row.attempts, row.next_attempt_at) == ("sending", 2, T0 + LEASE)
    assert settle(uow, again, GONE, now=T0, policy=POLICY) == "failed"
    [_, second] = dead_letter_rows(uow, user)
    assert second.payload["dead_letter"]["attempts"] == 2
    assert reopen(uow, held, now=T0, lease=LEASE) is None, "a dead letter of an earlier give-up"


# -- through the real stack -------------------------------------------------------------------
@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The roles read these when ``reminder_system`` starts them: three attempts within seconds."""
    monkeypatch.setenv("TODO_NOTIFY_RETRY_BASE_SECONDS", "0.5")
    monkeypatch.setenv("TODO_NOTIFY_RETRY_MAX_SECONDS", "2")
    monkeypatch.setenv("TODO_NOTIFY_MAX_ATTEMPTS", "3")


async def test_a_replayed_dead_letter_tries_the_given_up_webhook_again_and_sends_nothing_else(
    reminder_system: ReminderSystem, reminder_resources: Any, webhooks: WebhookReceiver,
    sidecar_factory: Any, session_id: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    system, erin = reminder_system, someone("erin")
    resources, _, _ = reminder_resources
    offsets = end_offsets(system.kafka_brokers, "reminders-dlq")
    # down for the three attempts TODO_NOTIFY_MAX_ATTEMPTS allows, back for the replay's
    url = webhooks.hook(erin, 503, 503, 503, 200)
    task, _ = await remind_soon(system, erin, title="Water the plants", webhook=url)
    await eventually(
        lambda: settled(system, task["id"], {"webhook": "failed"}), seconds=30, what="the webhook given up"
    )

    def ours(event: dict[str, Any]) -> bool:
        data = event.get("data", {})
        return bool(data.get("user_id") == erin and data.get("task_id") == task["id"])

    dead = await asyncio.to_thread(kafka_events_since, system.kafka_brokers, offsets, ours, 30, until=1)
    assert dead, "the given-up webhook's dead letter did not reach reminders-dlq within 30 s"

    # The operator's replay, through a sidecar of its own; its consumer group starts where this
    # test began reading (not at the dead letters earlier tests left on the topic).
    cli_id = f"todo-dlq-reminders-{session_id}-{uuid.uuid4().hex[:4]}"
    await asyncio.to_thread(commit_offsets, system.kafka_brokers, cli_id, offsets)
    cli_sidecar = sidecar_factory(cli_id, None, resources=resources)
    for name, value in cli_sidecar.app_env().items():
        monkeypatch.setenv(name, value)
    cli_settings = Settings(dapr_http_port=cli_sidecar.http_port, dapr_grpc_port=cli_sidecar.grpc_port)
    replay = asyncio.create_task(
        asyncio.to_thread(events_cli, ["dlq", "replay", "--topic", "reminders", "--wait", "30"], cli_settings)
    )
    await eventually(
        lambda: settled(system, task["id"], {"webhook": "sent"}), seconds=40, what="the replayed webhook"
    )
    assert await replay == 0
    await asyncio.sleep(2)  # anything sent twice would arrive by now

    [fired] = system.reminder_rows(task["id"])
    assert webhooks.hooks[erin].answered == [503, 503, 503, 200]
    rows = deliveries(system, task["id"])
    assert {ch: (r.status, r.attempts, r.last_error) for ch, r in rows.items()} == {
        "in_app": ("sent", 1, None),
        "email": ("sent", 1, None),
        "webhook": ("sent", 4, None),
    }
    assert len(emails_to(system.inbox, f"{erin}@example.org")) == 1
    async with system.client(erin) as client:
        listed = (await client.get("/api/notifications")).json()
    assert [n["title"] for n in listed["items"]] == ["Water the plants"], "one in-app notification"
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    [replayed] = [e for e in printed if ours(e)]
    assert (replayed["id"], replayed["dead_letter_topic"]) == (str(fired.id), "reminders-dlq")
    assert replayed["reason"] == (
        "notifications gave up webhook: webhook answered HTTP 503 (gave up after 3 attempts)"
    )
    dead = kafka_events_since(system.kafka_brokers, offsets, ours, wait=3)
    assert [e["id"] for e in dead] == [str(fired.id)], "one dead letter: the replay did not fail"
