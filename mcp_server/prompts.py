"""Prompts a person picks from a client's menu: plan my day, weekly review, triage my inbox,
break down a task.

    install_prompts(mcp, service, call)

Each prompt reads the caller's real tasks (the same use cases the tools run) and hands the
model that data as JSON, with what to do next and which tools to use for it. Nothing is
changed by getting a prompt: the model proposes, the person agrees, then the tools write.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, TypeVar

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.prompts.base import UserMessage
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS
from pydantic import Field

from mcp_server.resources import Call, today_for
from tasks.errors import InvalidInput
from tasks.inputs import TaskQuery
from tasks.schemas import TaskView
from tasks.service import Actor, TaskService

T = TypeVar("T")
LIMIT: Final = 200
INBOX_DEFAULT: Final = 10

FocusTag = Annotated[
    str | None,
    Field(description="Only tasks with this tag, e.g. 'work' (leave empty for everything)."),
]


def _dump(items: list[TaskView]) -> list[dict[str, Any]]:
    keep = ("id", "title", "due_at", "priority", "tags", "completed", "completed_at", "recurrence_text")
    return [{k: v for k, v in item.model_dump(mode="json").items() if k in keep} for item in items]


def _tagged(items: list[TaskView], tag: str | None) -> list[TaskView]:
    return [t for t in items if tag is None or tag.strip().lower() in t.tags]


def _data(title: str, payload: dict[str, Any]) -> str:
    return f"{title} (JSON, times in UTC):\n```json\n{json.dumps(payload, indent=1)}\n```"


def install_prompts(mcp: MCPServer, service: TaskService, call_tool: Call) -> None:
    async def call(fn: Callable[[Actor], T]) -> T:
        """``fn`` for the caller; a task error (not found, ambiguous title) is the prompt's error,
        as it is written (the SDK would otherwise replace it with 'Error rendering prompt')."""
        try:
            return await call_tool(fn)
        except ToolError as exc:
            raise MCPError(INVALID_PARAMS, str(exc)) from exc

    @mcp.prompt(
        name="plan_my_day",
        title="Plan my day",
        description="Look at what is due today and overdue, and propose an order for the day with "
        "times, given the hours you have.",
    )
    async def plan_my_day(
        hours_available: Annotated[
            str | None, Field(description="How many hours you can spend on tasks today, e.g. '5'.")
        ] = None,
        focus_tag: FocusTag = None,
    ) -> list[UserMessage]:
        today = await call(lambda actor: today_for(service, actor))
        today["items"] = [
            i for i in today["items"] if not focus_tag or focus_tag.strip().lower() in i["tags"]
        ]
        hours = f"I have about {hours_available} hours for tasks today." if hours_available else ""
        return [
            UserMessage(
                f"Plan my day ({today['date']}, time zone {today['timezone']}). {hours}\n"
                "Order the tasks below: overdue and high priority first, keep anything with a fixed "
                "time at its time, and say what to move to another day if it does not fit. Show "
                "times in my time zone. Do not change anything yet: when I agree, use update_task "
                "(by id) to move due times and complete_task for what is already done.\n\n"
                + _data("Due today and overdue", today)
            )
        ]

    @mcp.prompt(
        name="weekly_review",
        title="Weekly review",
        description="Review the last seven days (what got done, what slipped) and plan the next seven.",
    )
    async def weekly_review(focus_tag: FocusTag = None) -> list[UserMessage]:
        def gather(actor: Actor) -> dict[str, Any]:
            now = datetime.now(UTC)
            done = service.list(actor, TaskQuery(status="completed", limit=LIMIT)).items
            week_ago = now - timedelta(days=7)
            recent = [t for t in done if t.completed_at and t.completed_at >= week_ago]
            overdue = service.list(actor, TaskQuery(status="pending", overdue=True, limit=LIMIT)).items
            coming = service.list(
                actor,
                TaskQuery(status="pending", due_after=now, due_before=now + timedelta(days=7), limit=LIMIT),
            ).items
            return {
                "completed_last_7_days": _dump(_tagged(recent, focus_tag)),
                "overdue": _dump(_tagged(overdue, focus_tag)),
                "due_next_7_days": _dump(_tagged(coming, focus_tag)),
            }

        data = await call(gather)
        return [
            UserMessage(
                "Run my weekly review. Summarise what I finished in the last seven days, name what "
                "slipped (overdue) and ask whether to reschedule, drop or split each, then list the "
                "next seven days with anything that looks like too much on one day. Change nothing "
                "until I say so; then use update_task, complete_task or delete_task by task id.\n\n"
                + _data("My week", data)
            )
        ]

    @mcp.prompt(
        name="triage_my_inbox",
        title="Triage my inbox",
        description="Go through open tasks that have no due date or no priority yet and suggest a "
        "due date, a priority and tags for each.",
    )
    async def triage_my_inbox(
        how_many: Annotated[
            str | None, Field(description=f"How many tasks to triage at once (default {INBOX_DEFAULT}).")
        ] = None,
    ) -> list[UserMessage]:
        count = int(how_many) if how_many and how_many.strip().isdigit() else INBOX_DEFAULT
        count = max(1, min(count, 50))

        def inbox(actor: Actor) -> list[TaskView]:
            items = service.list(actor, TaskQuery(status="pending", limit=LIMIT)).items
            return [t for t in items if t.due_at is None or t.priority == "none"][:count]

        items = await call(inbox)
        return [
            UserMessage(
                f"Triage my inbox: these {len(items)} open tasks have no due date or no priority. "
                "For each, suggest a due date (in my time zone), a priority (low, medium, high) and "
                "one or two tags, or say it should be deleted. Ask me to confirm, then apply my "
                "answers with update_task by id (one call per task).\n\n"
                + _data("Inbox", {"items": _dump(items)})
            )
        ]

    @mcp.prompt(
        name="break_down_task",
        title="Break down a task",
        description="Split one task into small next steps, each a task of its own.",
    )
    async def break_down_task(
        task: Annotated[str, Field(description="The task's id or its exact title.")],
    ) -> list[UserMessage]:
        view = await call(lambda actor: _find(service, actor, task))
        return [
            UserMessage(
                "Break this task into three to seven concrete next steps of under an hour each. "
                "When I agree, add each with add_task (tag them like the task) and keep the original "
                "task as the goal.\n\n" + _data("The task", _dump([view])[0])
            )
        ]


def _find(service: TaskService, actor: Actor, task: str) -> TaskView:
    """The task by id, or the caller's one open task with exactly this title."""
    text = task.strip()
    if text.isdigit():
        return service.get(actor, int(text))
    matches = [
        t for t in service.list(actor, TaskQuery(status="all", search=text[:100], limit=LIMIT)).items
        if t.title.casefold() == text.casefold()
    ]  # fmt: skip
    if len(matches) == 1:
        return matches[0]
    found = f"{len(matches)} tasks are" if matches else "no task is"
    raise InvalidInput("task", f"{found} titled '{text[:100]}'; give the task's id (list_tasks shows it).")
