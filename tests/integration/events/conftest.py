"""The event system on the real stack: each role a ``todo-agent serve ROLE`` process beside its
own daprd, one PostgreSQL database, Kafka.

``event_resources`` -> ``(RenderedResources, AppIds)``: components with this session's app ids
    (consumer groups are per app id, so nothing earlier runs left on the topics reaches this
    database: consumers start at the newest offset).
``event_system`` -> :class:`EventSystem`: api, recurrence and audit roles running, their
    subscriptions live (consumer groups stable, a WebSocket probe seen end to end).
``role_launcher`` -> start more role processes (a second recurrence consumer, ...).
``private_stack`` -> :class:`PrivateStack`: the same on a stack of the test's own, whose Kafka the
    test may stop (``kafka_stopped``), with a fresh database.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from devstack.components import RenderedResources, render
from devstack.postgres import sqlalchemy_url
from devstack.stack import Stack
from tasks.db import make_engine, migrate
from tests.integration.events.support import (
    BROADCAST_COMPONENT,
    AppIds,
    EventSystem,
    PrivateStack,
    RoleLauncher,
    launching,
    subscriptions,
)


@pytest.fixture(scope="session")
def event_app_ids(session_id: str) -> AppIds:
    return AppIds(
        api=f"todo-api-ev{session_id}",
        recurrence=f"todo-recurrence-ev{session_id}",
        audit=f"todo-audit-ev{session_id}",
    )


@pytest.fixture(scope="session")
def event_resources(
    kafka_brokers: str, pg_url: str, event_app_ids: AppIds, tmp_path_factory: pytest.TempPathFactory
) -> RenderedResources:
    ids = event_app_ids
    resources = render(
        tmp_path_factory.mktemp("dapr-events"), kafka_brokers=kafka_brokers, pg_url=pg_url,
        subscriptions=False,
        extra={
            "subscriptions.yaml": subscriptions(api=ids.api, recurrence=ids.recurrence, audit=ids.audit),
            "kafka-pubsub-broadcast.yaml": BROADCAST_COMPONENT.format(brokers=kafka_brokers, api=ids.api),
        },
    )  # fmt: skip
    pubsub = resources.path / "kafka-pubsub.yaml"
    pubsub.write_text(pubsub.read_text().replace('value: "oldest"', 'value: "newest"'))
    engine = make_engine(pg_url)
    migrate(engine)  # once, before several processes start
    engine.dispose()
    return resources


@pytest.fixture
def role_launcher(
    event_resources: RenderedResources, pg_url: str, sidecar_factory: Any, stack_log_dir: Path
) -> Iterator[RoleLauncher]:
    with launching(event_resources, pg_url, sidecar_factory, stack_log_dir) as launcher:
        yield launcher


@pytest.fixture
def event_system(role_launcher: RoleLauncher, event_app_ids: AppIds, kafka_brokers: str) -> EventSystem:
    return role_launcher.start_event_system(event_app_ids, kafka_brokers)


@pytest.fixture
def private_stack(
    isolated_stack: Stack, session_id: str, tmp_path: Path, sidecar_factory: Any, stack_log_dir: Path
) -> Iterator[PrivateStack]:
    admin = isolated_stack.postgres.admin_url()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier("todo_private")))
    pg_url = sqlalchemy_url(f"{admin.rsplit('/', 1)[0]}/todo_private")
    brokers = isolated_stack.cfg.kafka_brokers
    ids = AppIds(api=f"todo-api-p{session_id}", recurrence=f"todo-recurrence-p{session_id}",
                 audit=f"todo-audit-p{session_id}")  # fmt: skip
    resources = render(tmp_path / "dapr", kafka_brokers=brokers, pg_url=pg_url, subscriptions=False,
        extra={
            "subscriptions.yaml": subscriptions(**vars(ids)),
            "kafka-pubsub-broadcast.yaml": BROADCAST_COMPONENT.format(brokers=brokers, api=ids.api),
        },
    )  # fmt: skip
    engine = make_engine(pg_url)
    migrate(engine)
    engine.dispose()
    scheduler = isolated_stack.cfg.scheduler_address
    with launching(resources, pg_url, sidecar_factory, stack_log_dir, scheduler) as launcher:
        yield PrivateStack(stack=isolated_stack, ids=ids, launcher=launcher)
