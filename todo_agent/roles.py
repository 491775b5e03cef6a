"""What each process role serves: every part contributes app extensions and background work.

A part is a module with ``extensions(container) -> list[Hook]`` and
``lifespans(container) -> list[LifespanHook]``; each looks at ``container.role`` (and
``container.settings.dapr_enabled``) to decide what it adds. New parts are listed in ``PARTS``.
"""

from __future__ import annotations

import importlib
from typing import Any, Final

from fastapi import FastAPI

from todo_agent.api import Hook, LifespanHook, create_app
from todo_agent.bootstrap import Container

PARTS: Final = (
    "events.wiring",
    "events.reminders.wiring",
    "agent.wiring",
    "todo_agent.web",
)


def _parts() -> list[Any]:
    modules = []
    for name in PARTS:
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name is None or not name.startswith(exc.name):
                raise  # a part that exists but fails to import is a bug, not an absence
    return modules


def extensions_for(container: Container) -> list[Hook]:
    return [hook for part in _parts() for hook in part.extensions(container)]


def lifespans_for(container: Container) -> list[LifespanHook]:
    return [hook for part in _parts() for hook in part.lifespans(container)]


def app_for(container: Container) -> FastAPI:
    return create_app(container, extensions=extensions_for(container), lifespans=lifespans_for(container))
