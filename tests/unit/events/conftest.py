"""Fixtures for the event parts on SQLite: a container, a recording publisher, a running app."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devstack.appserver import AppServer, serve_in_thread
from tests.unit.events.support import RecordingPublisher
from todo_agent.bootstrap import Container, bootstrap
from todo_agent.roles import app_for
from todo_agent.settings import Settings


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def make_container(make_settings: Callable[..., Settings]) -> Iterator[Callable[..., Container]]:
    made: list[Container] = []

    def make(role: str = "all", **overrides: Any) -> Container:
        overrides.setdefault("timezone", "UTC")
        container = bootstrap(role, make_settings(**overrides))  # type: ignore[arg-type]
        made.append(container)
        return container

    yield make
    for container in made:
        container.engine.dispose()


@pytest.fixture
def embedded(make_container: Callable[..., Container]) -> Iterator[tuple[Container, AppServer]]:
    """The embedded default (role "all", SQLite, in-process bus) served by a real uvicorn."""
    container = make_container("all")
    server = serve_in_thread(app_for(container))
    yield container, server
    server.stop()
