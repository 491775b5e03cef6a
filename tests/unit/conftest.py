"""Fixtures for the fast tier: containers built on SQLite for a role (disposed at the test's end)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from todo_agent.bootstrap import Container, bootstrap
from todo_agent.settings import Settings


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
