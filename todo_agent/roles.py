"""What each process role serves: the app extensions and background work per role.

Other parts register here (events, reminders, agent) so ``create_app`` stays role-agnostic.
"""

from __future__ import annotations

from fastapi import FastAPI

from todo_agent.api import Hook, LifespanHook, create_app
from todo_agent.bootstrap import Container


def extensions_for(container: Container) -> list[Hook]:
    return []


def lifespans_for(container: Container) -> list[LifespanHook]:
    return []


def app_for(container: Container) -> FastAPI:
    return create_app(container, extensions=extensions_for(container), lifespans=lifespans_for(container))
