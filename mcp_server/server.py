"""The MCP server: six task tools over the use cases, for stdio and streamable HTTP.

No tool takes a user id: the acting user comes from the verified token (HTTP) or from the
server's environment (stdio), through ``resolve_actor``.

    server = build_mcp_server(service, resolve_actor=lambda token: Actor("local"))
    server.run("stdio")
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

import anyio
from mcp.server import MCPServer
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field, ValidationError

from observability import tracing
from observability.metrics import TOOL_CALLS, TOOL_DURATION
from tasks.errors import TaskError
from tasks.inputs import (
    MAX_CURSOR,
    MAX_SEARCH,
    Minutes,
    RecurrenceText,
    RowId,
    TaskChanges,
    TaskDraft,
    TaskQuery,
    Text,
    When,
)
from tasks.schemas import DeletedTask, PriorityName, TaskPage, TaskView
from tasks.service import Actor, TaskService

T = TypeVar("T")
ActorResolver = Callable[[AccessToken | None], Actor]

_INSTRUCTIONS = (
    "Manage the signed-in user's to-do list. Times may be natural language ('tomorrow 5pm', "
    "'next friday', 'in 2 hours') read in the user's time zone; returned times are UTC ISO 8601."
)
Due = Annotated[
    When | None,
    Field(description="When it is due: 'tomorrow 5pm', 'next friday', 'in 2 hours' or ISO 8601."),
]
Priority = Annotated[PriorityName | None, Field(description="none, low, medium or high.")]
Tags = Annotated[list[Text] | None, Field(description="Single-word labels, e.g. ['groceries'].")]
Recurrence = Annotated[
    RecurrenceText | None,
    Field(
        description="Repeat rule: 'daily', 'every weekday', 'every 2 weeks on monday and thursday', "
        "'monthly on the last friday', or an RRULE such as 'FREQ=WEEKLY;BYDAY=MO'."
    ),
]
RemindBefore = Annotated[Minutes | None, Field(description="Remind this many minutes before the due time.")]
TaskId = Annotated[RowId, Field(description="The task's id, as shown by list_tasks.")]


class CompletedTask(TaskView):
    next_occurrence_due_at: datetime | None = Field(
        default=None, description="When the next occurrence of a repeating task will be due."
    )
    note: str | None = None


def complete_task_for(service: TaskService, actor: Actor, task_id: int) -> CompletedTask:
    """What ``complete_task`` does in its worker thread: complete, then tell when a repeating
    task's next occurrence will be due (a task that does not repeat has none: no second read)."""
    view = service.complete(actor, task_id)
    upcoming = service.preview_next_due(actor, task_id) if view.recurrence else None
    note = (
        f"The next occurrence will be due {upcoming.isoformat()}."
        if upcoming
        else ("The repeat rule has ended." if view.recurrence else None)
    )
    return CompletedTask(**view.model_dump(), next_occurrence_due_at=upcoming, note=note)


def build_mcp_server(
    service: TaskService,
    *,
    resolve_actor: ActorResolver,
    token_verifier: TokenVerifier | None = None,
    public_url: str = "http://127.0.0.1:8000",
) -> MCPServer:
    auth = (
        AuthSettings(  # the verifier checks the audience itself
            issuer_url=public_url,  # type: ignore[arg-type]
            resource_server_url=f"{public_url}/mcp",  # type: ignore[arg-type]
            validate_token_resource=False,
        )
        if token_verifier
        else None
    )
    mcp: MCPServer = MCPServer(
        name="todo-agent", instructions=_INSTRUCTIONS, token_verifier=token_verifier, auth=auth
    )

    async def call(tool: str, fn: Callable[[Actor], T]) -> T:
        """Run the tool's use case in a worker thread, as a span (``mcp.tool <name>``) and
        counted by outcome: ok, refused (a clean tool error) or error (anything unexpected)."""
        token = get_access_token()  # read here: the context variable does not reach the thread
        outcome = "error"
        started = time.perf_counter()
        with tracing.span(f"mcp.tool {tool}", attributes={"mcp.tool.name": tool}):
            try:
                result = await anyio.to_thread.run_sync(lambda: fn(resolve_actor(token)))
                outcome = "ok"
                return result
            except TaskError as exc:
                outcome = "refused"
                raise ToolError(exc.message) from exc
            except ValidationError as exc:  # an input model refused a value the tool's schema let by
                outcome = "refused"
                raise ToolError(readable(exc)) from exc
            finally:
                tracing.set_attribute("todo.outcome", outcome)
                TOOL_CALLS.labels(tool=tool, outcome=outcome).inc()
                TOOL_DURATION.labels(tool=tool).observe(time.perf_counter() - started)

    @mcp.tool(annotations=ToolAnnotations(title="Add a task", read_only_hint=False, destructive_hint=False))
    async def add_task(
        title: Annotated[Text, Field(description="Short name of the task (1-200 characters).")],
        description: Annotated[Text | None, Field(description="Details, up to 4000 characters.")] = None,
        due: Due = None,
        priority: Priority = None,
        tags: Tags = None,
        recurrence: Recurrence = None,
        remind_before_minutes: RemindBefore = None,
    ) -> TaskView:
        """Add a task to the user's list."""

        def add(actor: Actor) -> TaskView:
            draft = TaskDraft(
                title=title, description=description, due=due, priority=priority, tags=tags,
                recurrence=recurrence, remind_before_minutes=remind_before_minutes,
            )  # fmt: skip
            return service.add(actor, draft)

        return await call("add_task", add)

    @mcp.tool(
        annotations=ToolAnnotations(
            title="Change a task", read_only_hint=False, destructive_hint=False, idempotent_hint=True
        )
    )
    async def update_task(
        task_id: TaskId,
        title: Annotated[Text | None, Field(description="New title.")] = None,
        description: Annotated[Text | None, Field(description="New description.")] = None,
        due: Due = None,
        priority: Priority = None,
        tags: Annotated[list[Text] | None, Field(description="Replaces all tags.")] = None,
        recurrence: Recurrence = None,
        remind_before_minutes: RemindBefore = None,
        completed: Annotated[bool | None, Field(description="true completes, false reopens.")] = None,
    ) -> TaskView:
        """Change fields of a task; fields left out stay as they are."""
        given: dict[str, Any] = {
            "title": title, "description": description, "due": due, "priority": priority,
            "tags": tags, "recurrence": recurrence,
            "remind_before_minutes": remind_before_minutes, "completed": completed,
        }  # fmt: skip
        return await call(
            "update_task",
            lambda actor: service.update(
                actor, task_id, TaskChanges(**{k: v for k, v in given.items() if v is not None})
            ),
        )

    @mcp.tool(
        annotations=ToolAnnotations(
            title="Complete a task", read_only_hint=False, destructive_hint=False, idempotent_hint=True
        )
    )
    async def complete_task(task_id: TaskId) -> CompletedTask:
        """Mark a task as done. For a repeating task, says when the next occurrence is due."""

        return await call("complete_task", lambda actor: complete_task_for(service, actor, task_id))

    @mcp.tool(
        annotations=ToolAnnotations(
            title="Delete a task", read_only_hint=False, destructive_hint=True, idempotent_hint=False
        )
    )
    async def delete_task(task_id: TaskId) -> DeletedTask:
        """Delete a task for good."""
        return await call("delete_task", lambda actor: service.delete(actor, task_id))

    @mcp.tool(annotations=ToolAnnotations(title="List tasks", read_only_hint=True))
    async def list_tasks(
        status: Annotated[
            Literal["pending", "completed", "all"], Field(description="Which tasks to show.")
        ] = "pending",
        due_before: Annotated[When | None, Field(description="Due at or before this time.")] = None,
        due_after: Annotated[When | None, Field(description="Due at or after this time.")] = None,
        overdue: Annotated[bool | None, Field(description="Only open tasks past their due time.")] = None,
        tag: Annotated[Text | None, Field(description="Only tasks with this tag.")] = None,
        priority: Priority = None,
        search: Annotated[
            Text | None, Field(description="Text to find in title or description.", max_length=MAX_SEARCH)
        ] = None,
        limit: Annotated[int | None, Field(description="Page size, 1-200 (default 50).")] = None,
        cursor: Annotated[
            Text | None, Field(description="next_cursor from the previous page.", max_length=MAX_CURSOR)
        ] = None,
    ) -> TaskPage:
        """List the user's tasks, soonest due first; each task shows its next reminder."""

        def find(actor: Actor) -> TaskPage:
            query = TaskQuery(
                status=status, due_before=due_before, due_after=due_after, overdue=overdue, tag=tag,
                priority=priority, search=search, limit=limit or 50, cursor=cursor,
            )  # fmt: skip
            return service.list(actor, query)

        return await call("list_tasks", find)

    @mcp.tool(
        annotations=ToolAnnotations(
            title="Set or cancel a reminder",
            read_only_hint=False,
            destructive_hint=False,
            idempotent_hint=True,
        )  # fmt: skip
    )
    async def set_reminder(
        task_id: TaskId,
        at: Annotated[
            When | None, Field(description="When to remind: 'at 9am tomorrow', 'friday 19:30', ISO 8601.")
        ] = None,
        minutes_before_due: Annotated[
            Minutes | None, Field(description="Remind this many minutes before the due time.")
        ] = None,
        cancel: Annotated[bool, Field(description="true removes the task's reminder.")] = False,
    ) -> TaskView:
        """Set a reminder (absolute time or minutes before due), or cancel it."""
        if cancel:
            return await call("set_reminder", lambda actor: service.cancel_reminder(actor, task_id))
        return await call(
            "set_reminder",
            lambda actor: service.set_reminder(actor, task_id, at=at, minutes_before_due=minutes_before_due),
        )

    return mcp


def readable(exc: ValidationError) -> str:
    """'title: contains a NUL character ...' for each field a model refused."""
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ())) or "input"
        problems.append(f"{where}: {error.get('msg', 'invalid value')}")
    return "; ".join(problems)
