"""The event system on the real stack: each role a ``todo-agent serve ROLE`` process beside its
own daprd, one PostgreSQL database, Kafka.

``event_resources`` -> ``(RenderedResources, AppIds)``: components with this session's app ids
    (consumer groups are per app id, so nothing earlier runs left on the topics reaches this
    database: consumers start at the newest offset).
``event_system`` -> :class:`EventSystem`: api, recurrence and audit roles running, their
    subscriptions live (consumer groups stable, a WebSocket probe seen end to end).
``role_launcher`` -> start more role processes (a second recurrence consumer, ...).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.components import RenderedResources, render
from tasks.db import make_engine, migrate
from tests.integration.events.support import (
    BROADCAST_COMPONENT,
    AppIds,
    EventSystem,
    RoleLauncher,
    subscriptions,
)
from tests.integration.kafka_support import wait_for_consumer_group


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
    launcher = RoleLauncher(resources=event_resources, pg_url=pg_url, sidecar_factory=sidecar_factory,
                            log_dir=stack_log_dir)  # fmt: skip
    yield launcher
    launcher.stop_all()


@pytest.fixture
def event_system(
    role_launcher: RoleLauncher, event_app_ids: AppIds, kafka_brokers: str, pg_url: str
) -> EventSystem:
    ids = event_app_ids
    api = role_launcher.start("api", ids.api)
    recurrence = role_launcher.start("recurrence", ids.recurrence)
    audit = role_launcher.start("audit", ids.audit)
    for group in (ids.recurrence, ids.audit):
        wait_for_consumer_group(kafka_brokers, group)
    system = EventSystem(api=api, recurrence=recurrence, audit=audit, kafka_brokers=kafka_brokers,
                         pg_url=pg_url)  # fmt: skip
    system.wait_for_live_updates()
    return system
