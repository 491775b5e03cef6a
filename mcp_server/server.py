"""The MCP server: the task tools over the use cases, for stdio and streamable HTTP.

The six task tools (add, update, complete, delete, list, set_reminder) take a ``list`` and
subtasks (``parent_id``); batch forms (``add_tasks``, ``change_tasks``, ``delete_tasks``) take
explicit ids or the same filter as ``list_tasks``; ``lists`` and ``edit_list`` manage lists;
``undo`` reverts the last write. Every write tool takes an ``idempotency_key`` (as an argument,
or in the request's ``_meta``: ``mcp_server.idempotency``): a retry with the same key and
arguments returns the first result and writes nothing.

No tool takes a user id: the acting user comes from the verified token (HTTP) or from the
server's environment (stdio), through ``resolve_actor``.

A batch by filter over ``CONFIRM_OVER`` tasks without ``confirm`` raises ``NeedsConfirmation``;
``build_mcp_server(confirm_batch=...)`` is the hook that may ask the person (an elicitation) and
go ahead; without it the tool error says to call again with ``confirm: true``, and carries that
call as data (``mcp_server.confirmations``), as do the refused deletes.

    server = build_mcp_server(service, resolve_actor=lambda token: Actor("local"))
    server.run("stdio")
"""

# No "from __future__ import annotations": the SDK reads the tools' annotations, and
# delete_task's names a resolver local to build_mcp_server.
import builtins
import enum
import time
from collections.abc import Awaitable, Callable, Mapping
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
from mcp_types import INVALID_PARAMS, CallToolResult, InputRequiredResult, ToolAnnotations
from mcp_types.version import is_version_at_least
from pydantic import BaseModel, Field, ValidationError

from auth.tokens import ALL_SCOPES, READ_SCOPE, WRITE_SCOPE
from mcp_server.completions import Completer, default_completers, install_completions
from mcp_server.confirmations import (
    BATCH_PREFIX,
    ConfirmationNeeded,
    batch_needs_yes,
    delete_list_needs_yes,
    delete_task_needs_yes,
)
from mcp_server.idempotency import call_key
from mcp_server.live import LiveResources
from mcp_server.prompts import install_prompts
from mcp_server.resources import install_resources
from mcp_server.subscriptions import UserBus, install_session_subscriptions
from observability import tracing
from observability.metrics import TOOL_CALLS, TOOL_DURATION
from tasks.errors import InvalidInput, NeedsConfirmation, TaskError
from tasks.idempotency import MAX_KEY
from tasks.inputs import (
    CONFIRM_OVER,
    MAX_BATCH_ADD,
    MAX_CURSOR,
    MAX_SEARCH,
    ListRef,
    Minutes,
    RecurrenceText,
    RowId,
    TaskChanges,
    TaskDraft,
    TaskFilter,
    TaskQuery,
    Text,
    When,
)
from tasks.schemas import (
    BatchResult,
    DeletedList,
    DeletedTask,
    Lists,
    ListView,
    PriorityName,
    TaskPage,
    TaskWritten,
)
from tasks.service import Actor, TaskService, UndoResult

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
ActorResolver = Callable[[AccessToken | None], Actor]
#: Asks the person whether a large batch should go ahead (True: go ahead with ``confirm``).
ConfirmHook = Callable[[Context, NeedsConfirmation], Awaitable[bool]]

_INSTRUCTIONS = """\
Manage the signed-in user's to-do list (only theirs: no tool takes a user).

Times: write them as the user says them ('tomorrow 5pm', 'next friday', 'in 2 hours') or as
ISO 8601; they are read in the user's time zone. Every time you get back is UTC (ISO 8601,
'Z'): convert to the user's zone before showing it. todo://today says which zone that is.

Ids and titles: every tool that changes a task takes its numeric task_id, never a title. When
the user names a task by title, call list_tasks with search first; if several match, ask which
one. Task ids are also resources (todo://tasks/{id}) and complete in prompts.

Lists: every task is in one list (the Inbox unless you name one); `lists` shows them,
`edit_list` creates, renames, archives or deletes one
(deleting one with tasks='delete' asks the user, or needs confirm: true). Subtasks: add_task with parent_id.

Batches: add_tasks adds up to 50 tasks at once; change_tasks and delete_tasks act on explicit
task_ids or on a filter (the same filters as list_tasks) in one transaction and say what
changed. A filter that matches more than 20 tasks asks the user through the client when it
can; otherwise it needs confirm: true: say how many will change and get the user's yes first.

Deleting: delete_task asks the user through the client when it can; otherwise name the task,
get a clear yes, then call delete_task with confirm: true. A cancelled or declined
confirmation deletes nothing.

Undo and retries: `undo` reverts the user's last change exactly (a whole batch at once);
undoing an undo redoes. Every write takes an idempotency_key: retrying a timed-out call with
the same key never writes twice.

Repeating tasks: completing one makes the next occurrence; the result says when it is due.
Resources: todo://today (open tasks due today and overdue), todo://tasks/{id} and
todo://lists/{id} (a list with its open tasks); subscribe to hear when they change.
Prompts: plan_my_day, weekly_review, triage_my_inbox, break_down_task.
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
IdempotencyKey = Annotated[
    str | None,
    Field(
        description="Any unique string (e.g. a UUID) for this request: a retry with the same key "
        "and arguments returns the first result and changes nothing again.",
        max_length=MAX_KEY,
    ),
]
ListArg = Annotated[ListRef | None, Field(description="A list by name ('Groceries') or id.")]
ParentId = Annotated[RowId | None, Field(description="Make it a subtask of this task.")]
IncludeSubtasks = Annotated[
    bool, Field(description="Completing a task with open subtasks: true completes them too.")
]
Confirm = Annotated[
    bool, Field(description=f"Needed (true) when a filter matches more than {CONFIRM_OVER} tasks.")
]
TaskIds = Annotated[list[RowId] | None, Field(description="The tasks, by id (or give filter).")]
Filter = Annotated[
    TaskFilter | None, Field(description="Which tasks, with the filters of list_tasks (or give task_ids).")
]


class NeedsConfirmationError(ToolError):
    """The tool error for a batch that needs ``confirm``: carries how many tasks it would change."""

    def __init__(self, exc: NeedsConfirmation) -> None:
        super().__init__(f"{BATCH_PREFIX}{exc.message}")
        self.count = exc.count
        self.action = exc.action


class TaskToolServer(MCPServer):
    """The SDK's server, answering a tool's ``ConfirmationNeeded`` with its error result (the
    sentence, and the confirmation as data); the SDK makes any other tool error text only."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if isinstance(refused := exc.__cause__, ConfirmationNeeded):
                return refused.needed.result(str(exc))  # str(exc): the SDK's "Error executing tool …"
            raise


class ListEdited(BaseModel):
    """The list as it is now, or what deleting it did."""

    list: ListView | None = None
    deleted: DeletedList | None = None


class CompletedTask(TaskWritten):
    next_occurrence_due_at: datetime | None = Field(
        default=None, description="When the next occurrence of a repeating task will be due."
    )
    note: str | None = None


def complete_task_for(
    service: TaskService, actor: Actor, task_id: int, *, include_subtasks: bool = False,
    idempotency_key: str | None = None,
) -> CompletedTask:  # fmt: skip
    """What ``complete_task`` does in its worker thread: complete, then tell when a repeating
    task's next occurrence will be due (a task that does not repeat has none: no second read)."""
    view = service.once(
        actor, idempotency_key, "complete_task", {"task_id": task_id, "include_subtasks": include_subtasks},
        lambda: service.complete(actor, task_id, include_subtasks=include_subtasks), TaskWritten,
    )  # fmt: skip
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
    confirm_batch: ConfirmHook | None = None,
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
    mcp: MCPServer = TaskToolServer(
        name="todo-agent",
        instructions=_INSTRUCTIONS,
        token_verifier=token_verifier,
        auth=auth,
        subscriptions=UserBus(live, lambda: user_of(get_access_token())) if live is not None else False,
    )

    async def call(fn: Callable[[Actor], T], *, writes: bool = False, tool: str = "read") -> T:
        """Run a use case in a worker thread, counted by outcome: ok, refused (a clean tool error)
        or error (anything unexpected); the outcome goes on the MCP SDK's span of the request
        (``tools/call <name>``) when tracing is on. ``writes`` checks the token's write scope first."""
        token = get_access_token()  # read here: the context variable does not reach the thread
        if writes:
            refuse_without_write_scope(token)
        outcome = "error"
        started = time.perf_counter()
        try:
            result = await anyio.to_thread.run_sync(lambda: fn(resolve_actor(token)))
            outcome = "ok"
            return result
        except NeedsConfirmation as exc:
            outcome = "refused"
            raise NeedsConfirmationError(exc) from exc
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

    async def write(fn: Callable[[Actor], T], tool: str) -> T:
        return await call(fn, writes=True, tool=tool)

    install_resources(mcp, service, call)
    install_prompts(mcp, service, call)
    install_completions(mcp, opts.completers or default_completers(service), call)
    if live is not None:

        async def check_uri(uri: str) -> None:
            await readable_resource(mcp, uri)

        install_session_subscriptions(mcp, live, lambda: user_of(get_access_token()), check_uri)

    async def once(
        ctx: Context, idempotency_key: str | None, operation: str, arguments: dict[str, Any],
        fn: Callable[[Actor], M], result: type[M],
    ) -> M:  # fmt: skip
        """The write ``fn`` once per idempotency key (see ``TaskService.once``): the argument's,
        or the one in the request's ``_meta``."""
        key = call_key(idempotency_key, request_meta(ctx))
        return await write(
            lambda actor: service.once(actor, key, operation, arguments, lambda: fn(actor), result), operation
        )

    async def confirmed(
        ctx: Context, run: Callable[[bool], Awaitable[M]], confirm: bool, tool: str, arguments: dict[str, Any]
    ) -> M:
        """Run a batch; when it needs confirmation, ask through the hook if one is set and go
        ahead, else refuse with the call to make after the person's yes (``arguments``)."""
        try:
            return await run(confirm)
        except NeedsConfirmationError as exc:
            cause = exc.__cause__
            if not isinstance(cause, NeedsConfirmation):
                raise
            if confirm_batch is None:
                raise batch_needs_yes(tool, arguments, cause) from exc
            if not await confirm_batch(ctx, cause):
                raise ToolError(f"Not confirmed: nothing was changed ({cause.count} tasks matched).") from exc
            return await run(True)

    @mcp.tool(annotations=ToolAnnotations(title="Add a task", read_only_hint=False, destructive_hint=False))
    async def add_task(
        ctx: Context,
        title: Annotated[Text, Field(description="Short name of the task (1-200 characters).")],
        description: Annotated[Text | None, Field(description="Details, up to 4000 characters.")] = None,
        due: Due = None,
        priority: Priority = None,
        tags: Tags = None,
        recurrence: Recurrence = None,
        remind_before_minutes: RemindBefore = None,
        list: ListArg = None,
        parent_id: ParentId = None,
        idempotency_key: IdempotencyKey = None,
    ) -> TaskWritten:
        """Add a task (to the Inbox unless a list is named; under a parent task as a subtask)."""
        arguments: dict[str, Any] = {
            "title": title, "description": description, "due": due, "priority": priority, "tags": tags,
            "recurrence": recurrence, "remind_before_minutes": remind_before_minutes, "list": list,
            "parent_id": parent_id,
        }  # fmt: skip

        def add(actor: Actor) -> TaskWritten:
            return service.add(actor, TaskDraft(**arguments))

        return await once(ctx, idempotency_key, "add_task", arguments, add, TaskWritten)

    @mcp.tool(
        annotations=ToolAnnotations(title="Add several tasks", read_only_hint=False, destructive_hint=False)
    )
    async def add_tasks(
        ctx: Context,
        tasks: Annotated[
            builtins.list[TaskDraft],
            Field(description=f"The tasks to add, 1 to {MAX_BATCH_ADD}; all are added or none."),
        ],
        idempotency_key: IdempotencyKey = None,
    ) -> BatchResult:
        """Add several tasks in one call (each as add_task takes them)."""
        arguments = [t.model_dump(mode="json", exclude_unset=True) for t in tasks]
        return await once(
            ctx,
            idempotency_key,
            "add_tasks",
            {"tasks": arguments},
            lambda a: service.add_many(a, tasks),
            BatchResult,
        )

    @mcp.tool(
        annotations=ToolAnnotations(
            title="Change a task", read_only_hint=False, destructive_hint=False, idempotent_hint=True
        )
    )
    async def update_task(
        ctx: Context,
        task_id: TaskId,
        title: Annotated[Text | None, Field(description="New title.")] = None,
        description: Annotated[Text | None, Field(description="New description.")] = None,
        due: Due = None,
        priority: Priority = None,
        tags: Annotated[list[Text] | None, Field(description="Replaces all tags.")] = None,
        recurrence: Recurrence = None,
        remind_before_minutes: RemindBefore = None,
        completed: Annotated[bool | None, Field(description="true completes, false reopens.")] = None,
        list: Annotated[ListRef | None, Field(description="Move it to this list (name or id).")] = None,
        parent_id: ParentId = None,
        top_level: Annotated[bool, Field(description="true makes a subtask a top-level task.")] = False,
        include_subtasks: IncludeSubtasks = False,
        idempotency_key: IdempotencyKey = None,
    ) -> TaskWritten:
        """Change fields of a task; fields left out stay as they are."""
        given: dict[str, Any] = {
            "title": title, "description": description, "due": due, "priority": priority,
            "tags": tags, "recurrence": recurrence,
            "remind_before_minutes": remind_before_minutes, "completed": completed, "list": list,
            "parent_id": parent_id,
        }  # fmt: skip
        fields = {k: v for k, v in given.items() if v is not None}
        if top_level:
            fields["parent_id"] = None
        arguments = {"task_id": task_id, **fields, "include_subtasks": include_subtasks}
        return await once(
            ctx, idempotency_key, "update_task", arguments,
            lambda actor: service.update(
                actor, task_id, TaskChanges(**fields), include_subtasks=include_subtasks
            ),
            TaskWritten,
        )  # fmt: skip

    @mcp.tool(
        annotations=ToolAnnotations(
            title="Complete a task", read_only_hint=False, destructive_hint=False, idempotent_hint=True
        )
    )
    async def complete_task(
        ctx: Context,
        task_id: TaskId,
        include_subtasks: IncludeSubtasks = False,
        idempotency_key: IdempotencyKey = None,
    ) -> CompletedTask:
        """Mark a task as done. For a repeating task, says when the next occurrence is due."""
        key = call_key(idempotency_key, request_meta(ctx))
        return await write(
            lambda actor: complete_task_for(
                service, actor, task_id, include_subtasks=include_subtasks, idempotency_key=key
            ),
            "complete_task",
        )

    async def ask_before_deleting(
        task_id: int, confirm: bool, ctx: Context
    ) -> Elicit[ConfirmDelete] | Confirmation:
        """Ask the person (elicitation) unless ``confirm`` already says yes or the client cannot ask."""
        if confirm:
            return Confirmation.GIVEN
        if not can_elicit(ctx):
            return Confirmation.NOT_ASKED
        view = await call(lambda actor: service.get(actor, task_id))
        return Elicit(
            f"Delete task {view.id} '{view.title}' and its subtasks? (undo brings them back)", ConfirmDelete
        )

    @mcp.tool(
        annotations=ToolAnnotations(
            title="Delete a task", read_only_hint=False, destructive_hint=True, idempotent_hint=False
        )
    )
    async def delete_task(
        ctx: Context,
        task_id: TaskId,
        answer: Annotated[ElicitationResult[Any], Resolve(ask_before_deleting)],
        confirm: Annotated[
            bool,
            Field(
                description="true once the person you act for said yes to deleting this task "
                "(needed when the client cannot ask them itself)."
            ),
        ] = False,
        idempotency_key: IdempotencyKey = None,
    ) -> DeletedTask:
        """Delete a task with its subtasks, once the user said yes (asked by the client, or by
        you); undo brings them back."""
        refuse_without_write_scope(get_access_token())
        given = accepted(answer, "deleted", f"deleting task {task_id}")
        if given is Confirmation.NOT_ASKED:
            view = await call(lambda actor: service.get(actor, task_id))  # not found comes first
            raise delete_task_needs_yes(view.id, view.title)
        if isinstance(given, ConfirmDelete) and not given.delete:
            raise ToolError(f"Nothing was deleted: the user chose not to delete task {task_id}.")
        return await once(
            ctx,
            idempotency_key,
            "delete_task",
            {"task_id": task_id},
            lambda a: service.delete(a, task_id),
            DeletedTask,
        )

    async def ask_before_batch(
        verb: str, filter: Any, confirm: bool, ctx: Context
    ) -> Elicit[ConfirmBatch] | Confirmation:
        """Ask the person (elicitation) before a batch by filter over the threshold, unless
        ``confirm`` says yes already, the hook asks instead, or the client cannot be asked (then
        the service's ``needs_confirmation`` contract applies)."""
        if confirm:
            return Confirmation.GIVEN
        if filter is None or confirm_batch is not None or not can_elicit(ctx):
            return Confirmation.NOT_ASKED
        chosen = filter if isinstance(filter, TaskFilter) else TaskFilter.model_validate(filter)
        count = await call(lambda actor: service.count_matching(actor, chosen))
        if count <= CONFIRM_OVER:
            return Confirmation.NOT_ASKED  # small enough to go ahead without asking
        return Elicit(
            f"{verb} {count} tasks matching the filter? (undo reverts the whole batch)", ConfirmBatch
        )

    async def ask_before_changing(
        action: str, filter: Any, confirm: bool, ctx: Context
    ) -> Elicit[ConfirmBatch] | Confirmation:
        return await ask_before_batch(action.capitalize(), filter, confirm, ctx)

    async def ask_before_deleting_many(
        filter: Any, confirm: bool, ctx: Context
    ) -> Elicit[ConfirmBatch] | Confirmation:
        return await ask_before_batch("Delete (with their subtasks)", filter, confirm, ctx)

    @mcp.tool(
        annotations=ToolAnnotations(
            title="Change many tasks", read_only_hint=False, destructive_hint=False, idempotent_hint=True
        )
    )
    async def change_tasks(
        ctx: Context,
        answer: Annotated[ElicitationResult[Any], Resolve(ask_before_changing)],
        action: Annotated[
            Literal["complete", "reopen", "move", "tag", "untag", "reschedule"],
            Field(description="complete, reopen, move (to list), tag/untag (tags), reschedule (to due)."),
        ],
        task_ids: TaskIds = None,
        filter: Filter = None,
        list: Annotated[ListRef | None, Field(description="For move: the list, by name or id.")] = None,
        tags: Annotated[builtins.list[Text] | None, Field(description="For tag and untag.")] = None,
        due: Annotated[When | None, Field(description="For reschedule: the new due time.")] = None,
        include_subtasks: IncludeSubtasks = False,
        confirm: Confirm = False,
        idempotency_key: IdempotencyKey = None,
    ) -> BatchResult:
        """Complete, reopen, move, tag, untag or reschedule many tasks at once, by ids or by a
        filter; one transaction; says what changed (undo reverts the whole batch)."""
        go = batch_answer(answer, confirm)
        arguments: dict[str, Any] = {
            "action": action, "task_ids": task_ids,
            "filter": filter.model_dump(mode="json", exclude_unset=True) if filter else None,
            "list": list, "tags": tags, "due": due, "include_subtasks": include_subtasks,
        }  # fmt: skip

        async def run(go: bool) -> BatchResult:
            return await once(
                ctx, idempotency_key, "change_tasks", arguments,
                lambda a: service.change_many(
                    a, action, task_ids=task_ids, filter=filter, to_list=list, tags=tags, due=due,
                    include_subtasks=include_subtasks, confirm=go,
                ),
                BatchResult,
            )  # fmt: skip

        return await confirmed(ctx, run, go, "change_tasks", arguments)

    @mcp.tool(
        annotations=ToolAnnotations(
            title="Delete many tasks", read_only_hint=False, destructive_hint=True, idempotent_hint=False
        )
    )
    async def delete_tasks(
        ctx: Context,
        answer: Annotated[ElicitationResult[Any], Resolve(ask_before_deleting_many)],
        task_ids: TaskIds = None,
        filter: Filter = None,
        confirm: Confirm = False,
        idempotency_key: IdempotencyKey = None,
    ) -> BatchResult:
        """Delete many tasks (and their subtasks) at once, by ids or by a filter."""
        go = batch_answer(answer, confirm)
        chosen = filter.model_dump(mode="json", exclude_unset=True) if filter else None
        arguments: dict[str, Any] = {"task_ids": task_ids, "filter": chosen}

        async def run(go: bool) -> BatchResult:
            return await once(
                ctx, idempotency_key, "delete_tasks", arguments,
                lambda a: service.change_many(a, "delete", task_ids=task_ids, filter=filter, confirm=go),
                BatchResult,
            )  # fmt: skip

        return await confirmed(ctx, run, go, "delete_tasks", arguments)

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
        list: Annotated[ListRef | None, Field(description="Only tasks in this list (name or id).")] = None,
        parent_id: Annotated[RowId | None, Field(description="Only the subtasks of this task.")] = None,
        completed_after: Annotated[
            When | None, Field(description="Completed at or after this time (status 'completed').")
        ] = None,
        completed_before: Annotated[
            When | None, Field(description="Completed at or before this time (status 'completed').")
        ] = None,
        include_archived: Annotated[
            bool,
            Field(description="true also shows tasks in archived lists (left out unless a list is named)."),
        ] = False,
        limit: Annotated[int | None, Field(description="Page size, 1-200 (default 50).")] = None,
        cursor: Annotated[
            Text | None, Field(description="next_cursor from the previous page.", max_length=MAX_CURSOR)
        ] = None,
    ) -> TaskPage:
        """List the user's tasks, soonest due first; each task shows its next reminder, list and
        parent. Tasks in archived lists show only when their list is named or include_archived is
        true. Completed history: status 'completed' with completed_after/completed_before."""

        def find(actor: Actor) -> TaskPage:
            query = TaskQuery(
                status=status, due_before=due_before, due_after=due_after, overdue=overdue, tag=tag,
                priority=priority, search=search, limit=limit or 50, cursor=cursor, list=list,
                parent_id=parent_id, completed_after=completed_after, completed_before=completed_before,
                include_archived=include_archived,
            )  # fmt: skip
            return service.list(actor, query)

        return await call(find, tool="list_tasks")

    @mcp.tool(
        annotations=ToolAnnotations(
            title="Set or cancel a reminder",
            read_only_hint=False,
            destructive_hint=False,
            idempotent_hint=True,
        )  # fmt: skip
    )
    async def set_reminder(
        ctx: Context,
        task_id: TaskId,
        at: Annotated[
            When | None, Field(description="When to remind: 'at 9am tomorrow', 'friday 19:30', ISO 8601.")
        ] = None,
        minutes_before_due: Annotated[
            Minutes | None, Field(description="Remind this many minutes before the due time.")
        ] = None,
        cancel: Annotated[bool, Field(description="true removes the task's reminder.")] = False,
        idempotency_key: IdempotencyKey = None,
    ) -> TaskWritten:
        """Set a reminder (absolute time or minutes before due), or cancel it."""
        arguments = {"task_id": task_id, "at": at, "minutes_before_due": minutes_before_due, "cancel": cancel}
        if cancel:
            return await once(
                ctx,
                idempotency_key,
                "set_reminder",
                arguments,
                lambda a: service.cancel_reminder(a, task_id),
                TaskWritten,
            )
        return await once(
            ctx, idempotency_key, "set_reminder", arguments,
            lambda a: service.set_reminder(a, task_id, at=at, minutes_before_due=minutes_before_due),
            TaskWritten,
        )  # fmt: skip

    @mcp.tool(annotations=ToolAnnotations(title="Show lists", read_only_hint=True))
    async def lists(
        include_archived: Annotated[bool, Field(description="true also shows archived lists.")] = False,
    ) -> Lists:
        """The user's lists (Inbox first), each with how many open tasks it has."""
        return await call(lambda actor: service.lists(actor, include_archived=include_archived), tool="lists")

    async def ask_before_deleting_list(
        action: str, list: str | None, tasks: str | None, confirm: bool, ctx: Context
    ) -> Elicit[ConfirmDelete] | Confirmation:
        """Ask the person before a list is deleted with its tasks (``tasks="delete"``); moving
        them to the Inbox, or an empty list, needs no question."""
        if action != "delete" or not list or tasks != "delete":
            return Confirmation.GIVEN
        if confirm:
            return Confirmation.GIVEN
        ref = list
        count = await call(lambda actor: service.count_matching(actor, TaskFilter(status="all", list=ref)))
        if count == 0:
            return Confirmation.GIVEN
        if not can_elicit(ctx):
            return Confirmation.NOT_ASKED
        return Elicit(
            f"Delete the list '{ref}' and its {count} tasks? (undo brings them back)", ConfirmDelete
        )

    @mcp.tool(
        annotations=ToolAnnotations(
            title="Create, rename, archive or delete a list",
            read_only_hint=False,
            destructive_hint=True,
            idempotent_hint=False,
        )  # fmt: skip
    )
    async def edit_list(
        ctx: Context,
        action: Annotated[
            Literal["create", "rename", "archive", "unarchive", "delete"], Field(description="What to do.")
        ],
        answer: Annotated[ElicitationResult[Any], Resolve(ask_before_deleting_list)],
        list: Annotated[ListRef | None, Field(description="The list (name or id); not for create.")] = None,
        name: Annotated[Text | None, Field(description="For create and rename: the name.")] = None,
        tasks: Annotated[
            Literal["move_to_inbox", "delete"] | None,
            Field(description="For delete of a list with tasks: move them to the Inbox or delete them."),
        ] = None,
        confirm: Annotated[
            bool,
            Field(
                description="For delete with tasks='delete': true once the person you act for said yes "
                "(needed when the client cannot ask them itself)."
            ),
        ] = False,
        idempotency_key: IdempotencyKey = None,
    ) -> ListEdited:
        """Create, rename, archive, unarchive or delete a list (the Inbox stays). Deleting a list
        with its tasks asks the user first (or needs confirm: true); undo brings them back."""
        given = accepted(answer, "deleted", f"deleting the list '{list}'")
        if given is Confirmation.NOT_ASKED:
            ref = list or ""
            count = await call(lambda a: service.count_matching(a, TaskFilter(status="all", list=ref)))
            raise delete_list_needs_yes(ref, count)
        if isinstance(given, ConfirmDelete) and not given.delete:
            raise ToolError(f"Nothing was deleted: the user chose not to delete the list '{list}'.")
        arguments = {"action": action, "list": list, "name": name, "tasks": tasks}

        def edit(actor: Actor) -> ListEdited:
            if action == "create":
                if not name:
                    raise InvalidInput("name", "Give the new list a name.")
                return ListEdited(list=service.create_list(actor, name))
            if not list:
                raise InvalidInput("list", f"Name the list to {action} (its name or id).")
            if action == "delete":
                return ListEdited(deleted=service.delete_list(actor, list, tasks=tasks))
            if action == "rename":
                if not name:
                    raise InvalidInput("name", "Give the list's new name.")
                return ListEdited(list=service.change_list(actor, list, name=name))
            return ListEdited(list=service.change_list(actor, list, archived=action == "archive"))

        return await once(ctx, idempotency_key, "edit_list", arguments, edit, ListEdited)

    @mcp.tool(
        annotations=ToolAnnotations(
            title="Undo the last change", read_only_hint=False, destructive_hint=True, idempotent_hint=False
        )
    )
    async def undo(
        ctx: Context,
        change_id: Annotated[
            RowId | None, Field(description="The change to undo (a result's change_id); default: the last.")
        ] = None,
        idempotency_key: IdempotencyKey = None,
    ) -> UndoResult:
        """Undo the user's last change (or the one named), exactly: a whole batch at once. Undoing
        an undo redoes. Refused, changing nothing, if the tasks changed since."""
        return await once(
            ctx,
            idempotency_key,
            "undo",
            {"change_id": change_id},
            lambda a: service.undo(a, change_id),
            UndoResult,
        )

    return mcp


class Confirmation(enum.Enum):
    """What ``ask_before_deleting`` found without asking."""

    GIVEN = "given"  # the caller passed confirm: true
    NOT_ASKED = "not_asked"  # the client cannot be asked: the confirm contract applies


class ConfirmBatch(BaseModel):
    """The form an elicitation-capable client shows before a large batch by filter."""

    go_ahead: bool = Field(description="Yes, change all of these tasks.")


def accepted(answer: ElicitationResult[Any], nothing: str, what: str) -> Any:
    """The data of an accepted answer; a declined or cancelled one is a tool error saying that
    nothing was ``nothing`` (deleted, changed) because the user declined or cancelled ``what``."""
    if not isinstance(answer, AcceptedElicitation):
        said = "declined" if answer.action == "decline" else "cancelled"
        raise ToolError(f"Nothing was {nothing}: the user {said} {what}.")
    return answer.data


def batch_answer(answer: ElicitationResult[Any], confirm: bool) -> bool:
    """Whether a batch goes ahead as confirmed, from ``ask_before_batch``'s outcome; a declined,
    cancelled or 'no' answer is a tool error and nothing is changed."""
    given = accepted(answer, "changed", "the batch")
    if isinstance(given, ConfirmBatch):
        if not given.go_ahead:
            raise ToolError("Nothing was changed: the user chose not to go ahead with the batch.")
        return True
    return given is Confirmation.GIVEN or confirm


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


def request_meta(ctx: Context) -> Mapping[str, Any] | None:
    """The tool call's ``_meta`` (None for a call made without a request: ``MCPServer.call_tool``)."""
    try:
        return ctx.request_context.meta
    except ValueError:
        return None


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
