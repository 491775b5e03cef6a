"""Live resources: which MCP clients watch which of a user's resources, and telling them of a change.

    live = LiveResources()
    stop = live.watch("alice", {"todo://tasks/7"}, on_change)   # on_change(uri) on the loop
    live.task_changed("alice", 7, created=False)                  # from a task-updates event
    stop()

A change of task 7 of alice concerns ``todo://tasks/7``, ``todo://today`` and (when a task
appears or goes away) the list of her resources. Only alice's watchers hear of it: URIs such
as ``todo://today`` are the same string for every user, so every watch is kept per user.

Two kinds of watcher use this registry (``mcp_server.subscriptions``): ``subscriptions/listen``
streams (protocol 2026-07-28) and ``resources/subscribe`` on a handshake-era session (stdio or a
streamable HTTP session). What feeds it is the process's choice: the ``task-updates`` events
(the same delivery as the WebSocket hub, ``events.realtime``) in a served role, or
``OutboxFeed`` (below) for the stdio server, which has no event subscription of its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from tasks.events import TASK_EVENTS
from tasks.models import OutboxEvent
from tasks.unit_of_work import UnitOfWorkFactory

log = logging.getLogger(__name__)

TASK_URI: Final = "todo://tasks/{task_id}"
TODAY_URI: Final = "todo://today"
LIST_URI: Final = "todo://lists/{list_id}"
#: The pseudo-URI a watcher gives to hear that the list of the user's resources changed.
LIST_CHANGED: Final = "todo://tasks"
#: At most this many watchers per user (streams and session subscriptions together).
MAX_WATCHERS_PER_USER: Final = 256
_POLL_SECONDS: Final = 0.25
_READ_LIMIT: Final = 500


def task_uri(task_id: int) -> str:
    return TASK_URI.format(task_id=task_id)


def list_uri(list_id: int) -> str:
    return LIST_URI.format(list_id=list_id)


def uris_changed_by(task_id: int, event_type: str | None, list_ids: tuple[Any, ...] = ()) -> set[str]:
    """The resources a change of one task makes stale (a level trigger: 'read it again'): the
    task, today, and each list it was or now is in (``list_ids``, when the event says)."""
    uris = {task_uri(task_id), TODAY_URI} | {list_uri(i) for i in list_ids if isinstance(i, int)}
    if event_type in ("created", "deleted"):
        uris.add(LIST_CHANGED)
    return uris


class TooManyWatchers(Exception):
    """The user already has ``MAX_WATCHERS_PER_USER`` watchers open."""


@dataclass(eq=False)
class _Watcher:
    uris: frozenset[str] | None  # None: every resource of the user
    on_change: Callable[[str], None]


class LiveResources:
    """Watchers by user. ``watch`` and ``changed`` run on the event loop; callbacks must not block."""

    def __init__(self) -> None:
        self._watchers: dict[str, set[_Watcher]] = defaultdict(set)
        self.delivered = 0

    def watch(
        self, user_id: str, uris: Iterable[str] | None, on_change: Callable[[str], None]
    ) -> Callable[[], None]:
        """Call ``on_change(uri)`` for each change of ``uris`` (None: all) of ``user_id``; returns
        the idempotent way to stop. Raises ``TooManyWatchers`` past the per-user cap."""
        mine = self._watchers[user_id]
        if len(mine) >= MAX_WATCHERS_PER_USER:
            raise TooManyWatchers(
                f"At most {MAX_WATCHERS_PER_USER} subscriptions per user; close one and try again."
            )
        watcher = _Watcher(None if uris is None else frozenset(uris), on_change)
        mine.add(watcher)

        def stop() -> None:
            users = self._watchers.get(user_id)
            if users is not None:
                users.discard(watcher)
                if not users:
                    del self._watchers[user_id]

        return stop

    def watched_users(self) -> list[str]:
        return list(self._watchers)

    def watcher_count(self) -> int:
        return sum(len(w) for w in self._watchers.values())

    def changed(self, user_id: str, uris: set[str]) -> int:
        """Tell ``user_id``'s watchers of ``uris`` that those changed; returns how many were told."""
        told = 0
        for watcher in list(self._watchers.get(user_id, ())):
            for uri in sorted(uris if watcher.uris is None else uris & watcher.uris):
                try:
                    watcher.on_change(uri)
                    told += 1
                except Exception:  # one broken watcher must not keep the others from hearing
                    log.exception("a resource watcher of %s failed", user_id)
        self.delivered += told
        return told

    def task_changed(
        self, user_id: str, task_id: int, event_type: str | None = None, list_ids: tuple[Any, ...] = ()
    ) -> int:
        return self.changed(user_id, uris_changed_by(task_id, event_type, list_ids))

    async def on_task_update(self, user_id: str, message: dict[str, Any]) -> None:
        """An observer for the WebSocket hub (``events.realtime``): one client message of
        ``task-updates`` (``{"type": "task", "task_id", "event_type", ...}``, or ``{"type":
        "list", "list_id", ...}`` for a list's own change)."""
        task_id, list_id = message.get("task_id"), message.get("list_id")
        if message.get("type") == "task" and isinstance(task_id, int):
            self.task_changed(user_id, task_id, message.get("event_type"), lists_of(message))
        elif message.get("type") == "list" and isinstance(list_id, int):
            self.changed(user_id, {list_uri(list_id)})


def lists_of(event: dict[str, Any]) -> tuple[Any, ...]:
    """The lists a task event touches: the one the task is in and, after a move, the one it left."""
    task = event.get("task") or event.get("task_data") or {}
    change = (event.get("changes") or {}).get("list_id")  # [old, new] when it moved
    moved_from = change[0] if isinstance(change, list) and change else None
    return (task.get("list_id") if isinstance(task, dict) else None, moved_from)


class OutboxFeed:
    """Feeds ``live`` from the outbox for a process without an event subscription (stdio): every
    quarter second it reads the watched users' events committed after the last one it saw and
    reports each task change. Any writer to the same database counts: the web UI, the REST API,
    another replica."""

    def __init__(self, uow: UnitOfWorkFactory, live: LiveResources, *, poll: float = _POLL_SECONDS) -> None:
        self._uow = uow
        self._live = live
        self._poll = poll
        self._after: int | None = None

    async def begin(self) -> None:
        """Start at the newest outbox row: call before serving, so no subscription precedes it."""
        self._after = await asyncio.to_thread(self._newest)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._poll)
            try:
                rows = await self._tick()
            except Exception:  # a database hiccup: try again on the next tick
                log.exception("reading the outbox for live resources failed")
                continue
            for row in rows:  # on the loop: watchers' callbacks are not thread-safe
                task_id = row.payload.get("task_id")
                if isinstance(task_id, int):
                    self._live.task_changed(
                        row.user_id, task_id, row.payload.get("event_type"), lists_of(row.payload)
                    )

    async def _tick(self) -> list[OutboxEvent]:
        """The watched users' events since the last read. While nobody watches only the newest
        id is read (one indexed lookup). It is read *before* the watchers are looked at, so a
        subscription made at any moment misses no event committed after it."""
        if self._after is None or not self._live.watched_users():
            newest = await asyncio.to_thread(self._newest)
            users = self._live.watched_users()  # on the loop, after the newest id was read
            if self._after is None or not users:
                self._after = newest
                return []
        return await asyncio.to_thread(self._read, self._live.watched_users())

    def _newest(self) -> int:
        with self._uow(read_only=True) as uow:
            return uow.outbox.last_id()

    def _read(self, users: list[str]) -> list[OutboxEvent]:
        after = self._after or 0
        with self._uow(read_only=True) as uow:
            rows = [
                row
                for user in users
                for row in uow.outbox.of_user_after(user, after, topics=(TASK_EVENTS,), limit=_READ_LIMIT)
            ]
        rows.sort(key=lambda row: row.id or 0)
        if rows:
            self._after = max(row.id or 0 for row in rows)
        return rows
