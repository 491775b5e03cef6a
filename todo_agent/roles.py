"""What each process role serves: one table, read by ``bootstrap`` (what to build) and by
``todo_agent.api.app_for`` (what to mount and run).

With Dapr configured the consumers below are sidecar routes and publishing, jobs and
conversation memory go through the sidecar; otherwise everything goes through the in-process
adapters. Two rows differ by mode: the in-process dead-letter routes (``/events/dead-letters``)
exist only without Dapr, and the ``api`` role follows ``task-updates`` to schedule the reminder
jobs other processes committed only with Dapr (in-process every commit is this process's own).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

Role = Literal["api", "recurrence", "notifications", "audit", "all", "mcp"]
#: The roles of a Dapr deployment (``all`` and ``mcp`` are the embedded default and stdio).
ROLES: Final[tuple[Role, ...]] = ("api", "recurrence", "notifications", "audit")


@dataclass(frozen=True)
class Serves:
    """What one role serves and runs."""

    tasks: bool = False  # REST /api/tasks and /api/me, /mcp, the web UI
    chat: bool = False  # /api/chat, /api/conversations (and the chat's lifetime)
    realtime: bool = False  # /ws, fed by the task-updates subscription
    recurrence: bool = False  # task-events subscription: the next occurrence of a completed task
    audit_log: bool = False  # task-events subscription: the append-only audit log
    audit_api: bool = False  # GET /api/audit
    reminders: bool = False  # POST /job/{name}, /api/notifications; job scheduling and its reconciler
    notifications: bool = False  # reminders subscription (in-app, email, webhook) and the retrier
    relay: bool = False  # the outbox relay (its metrics in GET /metrics)


SERVES: Final[dict[Role, Serves]] = {
    "api": Serves(tasks=True, chat=True, realtime=True, audit_api=True, reminders=True, relay=True),
    "recurrence": Serves(recurrence=True, relay=True),
    "notifications": Serves(notifications=True, relay=True),
    "audit": Serves(audit_log=True, audit_api=True),
    "all": Serves(
        tasks=True,
        chat=True,
        realtime=True,
        recurrence=True,
        audit_log=True,
        audit_api=True,
        reminders=True,
        notifications=True,
        relay=True,
    ),  # fmt: skip
    "mcp": Serves(),
}
