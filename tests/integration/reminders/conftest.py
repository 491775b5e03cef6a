"""A reminders system on the real stack: the api and notifications roles, each with its daprd.

``reminder_system`` (function scope) -> :class:`ReminderSystem`: both apps served over HTTP
beside their own daprd (app ids unique to the test session), one PostgreSQL database, Kafka,
the Dapr scheduler, and a real SMTP server (aiosmtpd) the notifications role sends to.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from devstack.components import RenderedResources, render
from devstack.procs import free_port
from devstack.scheduler import Scheduler
from devstack.stack import Stack
from tests.integration.kafka_support import wait_for_consumer_group
from tests.integration.reminders.support import (
    SUBSCRIPTIONS,
    Inbox,
    ReminderSystem,
    start_role,
)
from tests.integration.reminders.webhook_support import WebhookReceiver


@pytest.fixture
def reminder_resources(
    kafka_brokers: str, pg_url: str, session_id: str, tmp_path: Path
) -> tuple[RenderedResources, str, str]:
    """Components with this session's app ids in the subscriptions; consumers start at the newest
    offset so reminders left on the topics by earlier runs are not replayed into this database."""
    api_id, notifications_id = f"todo-api-{session_id}", f"todo-notifications-{session_id}"
    resources = render(
        tmp_path / "dapr", kafka_brokers=kafka_brokers, pg_url=pg_url, subscriptions=False,
        extra={"subscriptions.yaml": SUBSCRIPTIONS.format(api=api_id, notifications=notifications_id)},
    )  # fmt: skip
    pubsub = resources.path / "kafka-pubsub.yaml"
    pubsub.write_text(pubsub.read_text().replace('value: "oldest"', 'value: "newest"'))
    return resources, api_id, notifications_id


@pytest.fixture
def smtp_inbox() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture
def reminder_system(
    reminder_resources: tuple[RenderedResources, str, str],
    smtp_inbox: tuple[Inbox, int],
    pg_url: str,
    kafka_brokers: str,
    sidecar_factory: Any,
    app_server_factory: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> ReminderSystem:
    resources, api_id, notifications_id = reminder_resources
    inbox, smtp_port = smtp_inbox
    common = {"pg_url": pg_url, "resources": resources, "sidecar_factory": sidecar_factory,
              "app_server_factory": app_server_factory}  # fmt: skip
    api = start_role("api", api_id, monkeypatch=monkeypatch, **common)
    notifications = start_role(
        "notifications", notifications_id, smtp_host="127.0.0.1", smtp_port=smtp_port, **common
    )
    wait_for_consumer_group(kafka_brokers, api_id)
    wait_for_consumer_group(kafka_brokers, notifications_id)
    return ReminderSystem(api=api, notifications=notifications, inbox=inbox, kafka_brokers=kafka_brokers)


@pytest.fixture
def private_scheduler(stack: Stack, tmp_path: Path) -> Iterator[Scheduler]:
    """A Dapr scheduler of its own (own ports and etcd folder) that a test may restart."""
    cfg = replace(
        stack.cfg,
        state_dir=tmp_path / "stack",
        scheduler_port=free_port(),
        scheduler_healthz_port=free_port(),
        scheduler_etcd_client_port=free_port(),
        scheduler_etcd_peer_port=free_port(),
    )
    scheduler = Scheduler(cfg)
    scheduler.up()
    yield scheduler
    scheduler.down()


@pytest.fixture
def webhooks(app_server_factory: Any) -> WebhookReceiver:
    """Webhook endpoints for the users of a test, on a real HTTP server of its own."""
    receiver = WebhookReceiver()
    receiver.url = app_server_factory(receiver.app).url
    return receiver
