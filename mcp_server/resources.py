"""The user's tasks as MCP resources: ``todo://tasks/{task_id}``, ``todo://lists/{list_id}``,
``todo://today`` and a paged list.

    install_resources(mcp, service, call)

``resources/list`` pages through the caller's tasks (open ones first, soonest due first), one
resource per task, with ``todo://today`` on the first page; ``nextCursor`` is the task list's
own cursor. Reading returns JSON (``application/json``): a task as ``list_tasks`` shows it, or
today's open tasks (due by the end of the day in the user's time zone, overdue ones included),
or a list with its first ``LIST_LIMIT`` open tasks.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime, time, timedelta
from typing import Any, Final, Protocol, TypeVar
from zoneinfo import ZoneInfo

from mcp.server import MCPServer
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver.exceptions import ResourceNotFoundError, ToolError
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, ListResourcesResult, PaginatedRequestParams, Resource

from mcp_server.live import LIST_URI, TASK_URI, TODAY_URI, task_uri
from tasks.errors import TaskError
from tasks.inputs import TaskQuery
from tasks.schemas import TaskView
from tasks.service import Actor, TaskService

T = TypeVar("T")


class Call(Protocol):
    """Runs a use case for the caller of the current request (``server.call``)."""

    def __call__(self, fn: Callable[[Actor], T], /) -> Awaitable[T]: ...


JSON: Final = "application/json"
PAGE_SIZE: Final = 100
TODAY_LIMIT: Final = 200
LIST_LIMIT: Final = 200


def list_for(service: TaskService, actor: Actor, list_id: int) -> dict[str, Any]:
    """One of the actor's lists (archived ones too) with its open tasks, in the listing's order."""
    found = [view for view in service.lists(actor, include_archived=True).items if view.id == list_id]
    if not found:
        raise ResourceNotFoundError(f"List {list_id} not found: the lists tool shows yours.")
    page = service.list(actor, TaskQuery(status="pending", list=str(list_id), limit=LIST_LIMIT))
    return {
        **found[0].model_dump(mode="json"),
        "items": [item.model_dump(mode="json") for item in page.items],
        "more": page.next_cursor is not None,
    }


def today_for(service: TaskService, actor: Actor, now: datetime | None = None) -> dict[str, Any]:
    """The actor's open tasks due by the end of today in their zone (overdue ones too)."""
    zone = ZoneInfo(actor.timezone or "UTC")
    local_now = (now or datetime.now(zone)).astimezone(zone)
    end_of_day = datetime.combine(local_now.date() + timedelta(days=1), time.min, zone)
    page = service.list(
        actor, TaskQuery(status="pending", due_before=end_of_day - timedelta(seconds=1), limit=TODAY_LIMIT)
    )
    return {
        "date": local_now.date().isoformat(),
        "timezone": str(zone),
        "items": [item.model_dump(mode="json") for item in page.items],
        "more": page.next_cursor is not None,
    }


def task_resource(view: TaskView) -> Resource:
    state = "done" if view.completed else (f"due {view.due_at.isoformat()}" if view.due_at else "no due date")
    return Resource(
        uri=task_uri(view.id), name=view.title, title=view.title, mime_type=JSON,
        description=f"Task {view.id}, {state}",
    )  # fmt: skip


def install_resources(mcp: MCPServer, service: TaskService, call: Call) -> None:
    @mcp.resource(
        TASK_URI,
        name="task",
        title="A task",
        description="One task by id, as JSON (the same fields list_tasks shows).",
        mime_type=JSON,
    )
    async def read_task(task_id: str) -> str:
        number = _task_id(task_id)
        view: TaskView = await _read(call, lambda actor: service.get(actor, number))
        return view.model_dump_json()

    @mcp.resource(
        LIST_URI,
        name="list",
        title="A list",
        description="One of your lists by id, with its open tasks, as JSON.",
        mime_type=JSON,
    )
    async def read_list(list_id: str) -> str:
        number = _number(list_id, "list", "todo://lists/3")
        return json.dumps(await _read(call, lambda actor: list_for(service, actor, number)))

    @mcp.resource(
        TODAY_URI,
        name="today",
        title="Today",
        description="Open tasks due by the end of today in your time zone, overdue ones included.",
        mime_type=JSON,
    )
    async def read_today() -> str:
        return json.dumps(await _read(call, lambda actor: today_for(service, actor)))

    async def list_resources(
        ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None
    ) -> ListResourcesResult:
        cursor = params.cursor if params is not None else None
        query = TaskQuery(status="all", limit=PAGE_SIZE, cursor=cursor)
        try:
            page = await call(lambda actor: service.list(actor, query))
        except ToolError as exc:
            raise MCPError(INVALID_PARAMS, f"cursor: {exc}") from exc
        first = [] if cursor else list(await mcp.list_resources())
        return ListResourcesResult(
            resources=first + [task_resource(view) for view in page.items], next_cursor=page.next_cursor
        )

    # The SDK's own handler lists only the fixed resources; the user's tasks need the caller
    # and a cursor (the low-level server is the SDK's documented place for such handlers).
    mcp._lowlevel_server.add_request_handler("resources/list", PaginatedRequestParams, list_resources)


def _task_id(text: str) -> int:
    return _number(text, "task", "todo://tasks/42")


def _number(text: str, kind: str, example: str) -> int:
    if text.isascii() and text.isdigit() and len(text) <= 18:
        return int(text)
    raise ResourceNotFoundError(f"'{text}' is no {kind} id: use a whole number, e.g. {example}.")


async def _read(call: Call, fn: Callable[[Actor], T]) -> T:
    """``fn`` for the caller; a task error (not found, bad input) is a clear 'not found'."""
    try:
        return await call(fn)
    except (ToolError, TaskError, ResourceNotFoundError) as exc:
        raise ResourceNotFoundError(str(exc)) from exc
