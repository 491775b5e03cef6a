"""The small protocols the event parts are built on; each has a Dapr and an in-process adapter.

``todo_agent.bootstrap`` builds one adapter of each for a role (``Container.publisher``,
``Container.jobs``, ``Container.hub``), Dapr or in-process.

A consumer is a ``Subscription``; the composition root serves it as a Dapr route
(``events.subscriber.router``: app API token checked, SUCCESS/RETRY/DROP replies) or, in the
embedded default, registers it with the in-process bus.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol


class PublishError(Exception):
    """The bus did not take the events (sidecar or broker down): retry later.

    ``permanent=True``: the bus refused them for good (Dapr answered 4xx: a malformed or
    forbidden message); retrying the same request would get the same answer."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class EventPublisher(Protocol):
    async def publish(self, topic: str, events: Sequence[Mapping[str, Any]], *, partition_key: str) -> None:
        """Publish CloudEvents (dicts with id, type, source, data, ...) to ``topic`` in order."""


class JobScheduler(Protocol):
    async def schedule(self, name: str, *, due: datetime, data: Mapping[str, Any]) -> None:
        """Create or overwrite the one-shot job ``name`` that calls back at ``due``."""

    async def cancel(self, name: str) -> None:
        """Delete job ``name``; deleting a job that does not exist is not an error."""

    async def aclose(self) -> None:
        """Let go of timers and connections (a later ``schedule`` may open them again)."""


class RealtimeHub(Protocol):
    async def send_to_user(self, user_id: str, message: Mapping[str, Any]) -> int:
        """Send ``message`` to every open connection of ``user_id``; returns how many got it."""


class Outcome(StrEnum):
    """What a subscriber tells the bus: done, deliver again later, or give up (dead-letter)."""

    SUCCESS = "SUCCESS"
    RETRY = "RETRY"
    DROP = "DROP"


@dataclass(frozen=True)
class Delivery:
    """One CloudEvent as a consumer receives it (from daprd or from the in-process bus)."""

    id: str
    type: str
    topic: str
    data: dict[str, Any]
    raw: Mapping[str, Any] = field(default_factory=dict)


Handler = Callable[[Delivery], Awaitable[Outcome]]


@dataclass(frozen=True)
class Subscription:
    """A consumer of one topic. ``consumer`` names it in ``processed_events``; ``route`` is the
    path daprd posts to (it must match ``dapr-components/subscriptions.yaml``)."""

    topic: str
    route: str
    consumer: str
    handler: Handler
    dead_letter_topic: str | None = None
