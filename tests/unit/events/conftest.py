"""Fixtures for the event parts on SQLite: a container, a recording publisher, a running app."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from devstack.appserver import AppServer, serve_in_thread
from tests.unit.events.support import RecordingPublisher
from todo_agent.api import app_for
from todo_agent.bootstrap import Container


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def embedded(make_container: Callable[..., Container]) -> Iterator[tuple[Container, AppServer]]:
    """The embedded default (role "all", SQLite, in-process bus) served by a real uvicorn."""
    container = make_container("all")
    server = serve_in_thread(app_for(container))
    yield container, server
    server.stop()
