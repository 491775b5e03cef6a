"""The MCP server: six task tools over the use cases, for stdio and streamable HTTP.

No tool takes a user id: the acting user comes from the verified token (HTTP) or from the
server's environment (stdio), through ``resolve_actor``.

    server = build_mcp_server(service, resolve_actor=lambda token: Actor("local"))
    server.run("stdio")
"""

# No "from __future__ import annotations": the SDK reads the tools' annotations, and
# delete_task's names a resolver local to build_mcp_server.
import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

import anyio
from mcp.server import MCPServer
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.elicitation import AcceptedElicitation, ElicitationResult
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.server.mcpserver.resolve import Elicit, Resolve
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, ToolAnnotations
from mcp_types.version import is_version_at_least
from pydantic import BaseModel, Field, ValidationError

from mcp_server.auth import ALL_SCOPES, READ_SCOPE, WRITE_SCOPE
from mcp_server.completions import Completer, default_completers, install_completions
from mcp_server.live import LiveResources
from mcp_server.prompts import install_prompts
from mcp_server.resources import install_resources
from mcp_server.subscriptions import UserBus, install_session_subscriptions
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

_INSTRUCTIONS = """\
Manage the signed-in user's to-do list (only theirs: no tool takes a user).

Times: write them as the user says them ('tomorrow 5pm', 'next friday', 'in 2 hours') or as
ISO 8601; they are read in the user's time zone. Every time you get back is UTC (ISO 8601,
'Z'): convert to the user's zone before showing it. todo://today says which zone that is.

Ids and titles: every tool that changes a task takes its numeric task_id, never a title. When
the user names a task by title, call list_tasks with search first; if several match, ask which
one. Task ids are also resources (todo://tasks/{id}) and complete in prompts.

Batches: there is no bulk tool; change several tasks with one call per task id (list_tasks
first, with a filter, and say how many you will change before you start). list_tasks pages:
pass next_cursor back for more.

Deleting: delete_task cannot be undone. A client that supports elicitation is asked by the
server; otherwise name the task, get a clear yes from the user, then call delete_task with
confirm: true. A cancelled or declined confirmation deletes nothing.

Repeating tasks: completing one makes the next occurrence; the result says when it is due.
Resources: todo://today (open tasks due today and overdue) and todo://tasks/{id}; subscribe
to hear when they change. Prompts: plan_my_day, weekly_review, triage_my_inbox, break_down_task.
"""
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


@dataclass
class McpOptions:
    """How the server is reached and what it may tell clients.

    ``public_url``: where clients reach this service (the OAuth resource is ``{public_url}/mcp``).
    ``authorization_servers``: the OAuth issuers whose tokens it accepts (RFC 9728 metadata);
    by default the service itself. ``live``: the registry subscriptions are fed from (None: the
    server offers no subscriptions). ``current_user``: the caller's user id without a database
    read (default: ``resolve_actor``'s). ``completers``: argument name -> completer.
    """

    public_url: str = "http://127.0.0.1:8000"
    authorization_servers: list[str] = field(default_factory=list)
    live: LiveResources | None = None
    current_user: Callable[[AccessToken | None], str] | None = None
    completers: dict[str, Completer] | None = None


def build_mcp_server(
    service: TaskService,
    *,
    resolve_actor: ActorResolver,
    token_verifier: TokenVerifier | None = None,
    public_url: str = "http://127.0.0.1:8000",
    options: McpOptions | None = None,
) -> MCPServer:
    opts = options or McpOptions(public_url=public_url)
    auth = (
        AuthSettings(  # the verifier checks the audience itself
            issuer_url=(opts.authorization_servers or [opts.public_url])[0],  # type: ignore[arg-type]
            resource_server_url=f"{opts.public_url}/mcp",  # type: ignore[arg-type]
            validate_token_resource=False,
            required_scopes=[READ_SCOPE],
        )
        if token_verifier
        else None
    )
    user_of = opts.current_user or (lambda token: resolve_actor(token).user_id)
    live = opts.live
    mcp: MCPServer = MCPServer(
        name="todo-agent",
        instructions=_INSTRUCTIONS,
        token_verifier=token_verifier,
        auth=auth,
        subscriptions=UserBus(live, lambda: user_of(get_access_token())) if live is not None else False,
    )

    async def call(fn: Callable[[Actor], T], *, writes: bool = False) -> T:
        token = get_access_token()  # read here: the context variable does not reach the thread
        if writes:
            refuse_without_write_scope(token)
        try:
            return await anyio.to_thread.run_sync(lambda: fn(resolve_actor(token)))
        except TaskError as exc:
            raise ToolError(exc.message) from exc
        except ValidationError as exc:  # an input model refused a value the tool's schema let by
            raise ToolError(readable(exc)) from exc

    async def write(fn: Callable[[Actor], T]) -> T:
        return await call(fn, writes=True)

    install_resources(mcp, service, call)
    install_prompts(mcp, service, call)
    install_completions(mcp, opts.completers or default_completers(service), call)
    if live is not None:

        async def check_uri(uri: str) -> None:
            await readable_resource(mcp, uri)

        install_session_subscriptions(mcp, live, lambda: user_of(get_access_token()), check_uri)

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

        return await write(add)

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
        return await write(
            lambda actor: service.update(
                actor, task_id, TaskChanges(**{k: v for k, v in given.items() if v is not None})
            )
        )

    @mcp.tool(
        annotations=ToolAnnotations(
            title="Complete a task", read_only_hint=False, destructive_hint=False, idempotent_hint=True
        )
    )
    async def complete_task(task_id: TaskId) -> CompletedTask:
        """Mark a task as done. For a repeating task, says when the next occurrence is due."""

        return await write(lambda actor: complete_task_for(service, actor, task_id))

    async def ask_before_deleting(
        task_id: int, confirm: bool, ctx: Context
    ) -> Elicit[ConfirmDelete] | Confirmation:
        """Ask the person (elicitation) unless ``confirm`` already says yes or the client cannot ask."""
        if confirm:
            return Confirmation.GIVEN
        if not can_elicit(ctx):
            return Confirmation.NOT_ASKED
        view = await call(lambda actor: service.get(actor, task_id))
        return Elicit(f"Delete task {view.id} '{view.title}' for good? This cannot be undone.", ConfirmDelete)

    @mcp.tool(
        annotations=ToolAnnotations(
            title="Delete a task", read_only_hint=False, destructive_hint=True, idempotent_hint=False
        )
    )
    async def delete_task(
        task_id: TaskId,
        answer: Annotated[ElicitationResult[Any], Resolve(ask_before_deleting)],
        confirm: Annotated[
            bool,
            Field(
                description="true once the person you act for said yes to deleting this task "
                "(needed when the client cannot ask them itself)."
            ),
        ] = False,
    ) -> DeletedTask:
        """Delete a task for good, once the user said yes (asked by the client, or by you)."""
        refuse_without_write_scope(get_access_token())
        if not isinstance(answer, AcceptedElicitation):
            said = "declined" if answer.action == "decline" else "cancelled"
            raise ToolError(f"Nothing was deleted: the user {said} deleting task {task_id}.")
        given = answer.data
        if given is Confirmation.NOT_ASKED:
            view = await call(lambda actor: service.get(actor, task_id))  # not found comes first
            raise ToolError(
                f"Deleting task {view.id} '{view.title}' cannot be undone: ask the user, and call "
                "delete_task again with confirm: true once they say yes. Nothing was deleted."
            )
        if isinstance(given, ConfirmDelete) and not given.delete:
            raise ToolError(f"Nothing was deleted: the user chose not to delete task {task_id}.")
        return await write(lambda actor: service.delete(actor, task_id))

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

        return await call(find)

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
            return await write(lambda actor: service.cancel_reminder(actor, task_id))
        return await write(
            lambda actor: service.set_reminder(actor, task_id, at=at, minutes_before_due=minutes_before_due)
        )

    return mcp


class Confirmation(enum.Enum):
    """What ``ask_before_deleting`` found without asking."""

    GIVEN = "given"  # the caller passed confirm: true
    NOT_ASKED = "not_asked"  # the client cannot be asked: the confirm contract applies


class ConfirmDelete(BaseModel):
    """The form an elicitation-capable client shows before a delete."""

    delete: bool = Field(description="Yes, delete this task for good.")


def can_elicit(ctx: Context) -> bool:
    """Whether this client can be asked mid-call: it declared form elicitation, and (before
    protocol 2026-07-28, where the question rides the call's result) this connection can carry
    a request to it (stdio, or a streamable HTTP session; not a stateless POST)."""
    capabilities = ctx.client_capabilities
    elicitation = capabilities.elicitation if capabilities is not None else None
    if elicitation is None or (elicitation.form is None and elicitation.url is not None):
        return False
    version = ctx.protocol_version
    if version is not None and is_version_at_least(version, "2026-07-28"):
        return True
    return ctx.request_context.session.can_send_request


def refuse_without_write_scope(token: AccessToken | None) -> None:
    """A token that may only read (OAuth scope tasks:read without tasks:write) cannot change tasks."""
    if token is not None and WRITE_SCOPE not in token.scopes:
        raise ToolError(
            f"This sign-in may only read tasks (scope {READ_SCOPE}); sign in again and grant "
            f"{WRITE_SCOPE} to change them. Nothing was changed."
        )


async def readable_resource(mcp: MCPServer, uri: str) -> None:
    """Raise ``MCPError`` (invalid params) unless the caller can read ``uri``."""
    try:
        await mcp.read_resource(uri)
    except ResourceError as exc:
        raise MCPError(INVALID_PARAMS, f"Cannot subscribe to {uri}: {exc}") from exc


def resource_metadata(options: McpOptions) -> dict[str, Any]:
    """RFC 9728 protected resource metadata of ``/mcp``: who issues its tokens, which scopes."""
    return {
        "resource": f"{options.public_url}/mcp",
        "authorization_servers": options.authorization_servers or [options.public_url],
        "scopes_supported": list(ALL_SCOPES),
        "bearer_methods_supported": ["header"],
        "resource_name": "todo-agent",
    }


def readable(exc: ValidationError) -> str:
    """'title: contains a NUL character ...' for each field a model refused."""
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ())) or "input"
        problems.append(f"{where}: {error.get('msg', 'invalid value')}")
    return "; ".join(problems)
