"""The REST task API (for the web UI and plain HTTP clients): the same use cases as MCP.

Every write takes an ``Idempotency-Key`` header: a retry with the same key and body returns the
first response and writes nothing; the same key with another body is a 422. Batch calls
(``POST /api/tasks/batch``, ``POST /api/tasks/bulk``) answer a filter that matches more than
``CONFIRM_OVER`` tasks without ``confirm`` with 409 ``{"needs_confirmation": true, "count": N}``.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Callable
from typing import Annotated, Any, Final, Literal, TypeVar

from fastapi import APIRouter, Header, Path, Query, status
from pydantic import BaseModel, Field

from tasks.errors import InvalidInput
from tasks.idempotency import MAX_KEY
from tasks.inputs import (
    MAX_CURSOR,
    MAX_ID,
    MAX_LIST_NAME,
    MAX_SEARCH,
    MAX_WHEN,
    ListRef,
    Minutes,
    RowId,
    TaskChanges,
    TaskDraft,
    TaskFilter,
    TaskQuery,
    Text,
    When,
)
from tasks.profiles import Profile, ProfileChanges
from tasks.schemas import (
    BatchResult,
    DeletedList,
    DeletedTask,
    Lists,
    ListView,
    PriorityName,
    TaskPage,
    TaskView,
    TaskWritten,
)
from tasks.service import Actor, BatchAction, ListTasks, UndoResult
from todo_agent.deps import ContainerDep, CurrentActor

router = APIRouter(prefix="/api", tags=["tasks"])
#: ``If-Match``: a version as this API gives it out (``3``, ``"3"`` or ``W/"3"``), or ``*``.
_VERSION_TAG: Final = re.compile(r'(?:W/)?"?([0-9]{1,18})"?', re.ASCII)
TaskId = Annotated[int, Path(ge=1, le=MAX_ID, description="The task's id.")]
ListPath = Annotated[ListRef, Path(max_length=MAX_LIST_NAME, description="The list's name or id.")]
IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", max_length=MAX_KEY, description="Makes a retry of this write safe."),
]
R = TypeVar("R", bound=BaseModel)


class NewTasks(BaseModel):
    tasks: list[TaskDraft]


class BatchChange(BaseModel):
    """A change to many tasks: by ``task_ids`` or by ``filter`` (the filters of ``GET /api/tasks``)."""

    action: BatchAction
    task_ids: builtins.list[RowId] | None = None
    filter: TaskFilter | None = None
    list: ListRef | None = Field(default=None, description="For move: the list, by name or id.")
    tags: builtins.list[Text] | None = Field(default=None, description="For tag and untag.")
    due: When | None = Field(default=None, description="For reschedule: the new due time.")
    include_subtasks: bool = False
    confirm: bool = False


class NewList(BaseModel):
    name: Text


class ListChanges(BaseModel):
    name: Text | None = None
    archived: bool | None = None


class UndoRequest(BaseModel):
    change_id: RowId | None = Field(default=None, description="Default: your last change.")


class ReminderRequest(BaseModel):
    at: When | None = Field(default=None, description="'at 9am tomorrow', 'friday 19:30' or ISO 8601")
    minutes_before_due: Minutes | None = None


class Me(Profile):
    auth_required: bool
    effective_timezone: str


@router.get("/tasks", summary="List tasks")
def list_tasks(
    actor: CurrentActor,
    container: ContainerDep,
    status_: Annotated[Literal["pending", "completed", "all"], Query(alias="status")] = "pending",
    due_before: Annotated[When | None, Query(max_length=MAX_WHEN)] = None,
    due_after: Annotated[When | None, Query(max_length=MAX_WHEN)] = None,
    overdue: bool | None = None,
    tag: Text | None = None,
    priority: PriorityName | None = None,
    search: Annotated[Text | None, Query(max_length=MAX_SEARCH)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[Text | None, Query(max_length=MAX_CURSOR)] = None,
    list_: Annotated[ListRef | None, Query(alias="list", description="A list's name or id.")] = None,
    parent_id: Annotated[int | None, Query(ge=1, le=MAX_ID, description="Only its subtasks.")] = None,
    completed_after: Annotated[When | None, Query(max_length=MAX_WHEN)] = None,
    completed_before: Annotated[When | None, Query(max_length=MAX_WHEN)] = None,
    include_archived: Annotated[
        bool, Query(description="Also tasks in archived lists (left out unless `list` names one).")
    ] = False,
) -> TaskPage:
    query = TaskQuery(
        status=status_, due_before=due_before, due_after=due_after, overdue=overdue, tag=tag,
        priority=priority, search=search, limit=limit, cursor=cursor, list=list_, parent_id=parent_id,
        completed_after=completed_after, completed_before=completed_before, include_archived=include_archived,
    )  # fmt: skip
    return container.tasks.list(actor, query)


def _once(
    container: ContainerDep, actor: Actor, key: str | None, operation: str, arguments: Any,
    run: Callable[[], R], result: type[R],
) -> R:  # fmt: skip
    return container.tasks.once(actor, key, operation, arguments, run, result)


@router.post("/tasks", status_code=status.HTTP_201_CREATED, summary="Add a task")
def add_task(
    draft: TaskDraft, actor: CurrentActor, container: ContainerDep, key: IdempotencyKey = None
) -> TaskWritten:
    arguments = draft.model_dump(mode="json", exclude_unset=True)
    return _once(
        container,
        actor,
        key,
        "POST /tasks",
        arguments,
        lambda: container.tasks.add(actor, draft),
        TaskWritten,
    )


@router.post("/tasks/batch", status_code=status.HTTP_201_CREATED, summary="Add up to 50 tasks at once")
def add_tasks(
    body: NewTasks, actor: CurrentActor, container: ContainerDep, key: IdempotencyKey = None
) -> BatchResult:
    return _once(
        container, actor, key, "POST /tasks/batch", body.model_dump(mode="json", exclude_unset=True),
        lambda: container.tasks.add_many(actor, body.tasks), BatchResult,
    )  # fmt: skip


@router.post("/tasks/bulk", summary="Complete, reopen, move, tag, untag, reschedule or delete many tasks")
def change_tasks(
    body: BatchChange, actor: CurrentActor, container: ContainerDep, key: IdempotencyKey = None
) -> BatchResult:
    def run() -> BatchResult:
        return container.tasks.change_many(
            actor, body.action, task_ids=body.task_ids, filter=body.filter, to_list=body.list, tags=body.tags,
            due=body.due, include_subtasks=body.include_subtasks, confirm=body.confirm,
        )  # fmt: skip

    arguments = body.model_dump(mode="json", exclude_unset=True)
    return _once(container, actor, key, "POST /tasks/bulk", arguments, run, BatchResult)


@router.get("/tasks/{task_id}", summary="Get a task")
def get_task(task_id: TaskId, actor: CurrentActor, container: ContainerDep) -> TaskView:
    return container.tasks.get(actor, task_id)


@router.patch("/tasks/{task_id}", summary="Change a task (send If-Match: <version> to avoid lost updates)")
def update_task(
    task_id: TaskId,
    changes: TaskChanges,
    actor: CurrentActor,
    container: ContainerDep,
    if_match: Annotated[str | None, Header()] = None,
    include_subtasks: bool = False,
    key: IdempotencyKey = None,
) -> TaskWritten:
    expected = _version_of(if_match)
    arguments = {"task_id": task_id, "changes": changes.model_dump(mode="json", exclude_unset=True),
                 "expected": expected, "include_subtasks": include_subtasks}  # fmt: skip
    return _once(
        container, actor, key, "PATCH /tasks", arguments,
        lambda: container.tasks.update(
            actor, task_id, changes, expected_version=expected, include_subtasks=include_subtasks
        ),
        TaskWritten,
    )  # fmt: skip


@router.delete("/tasks/{task_id}", summary="Delete a task and its subtasks")
def delete_task(
    task_id: TaskId, actor: CurrentActor, container: ContainerDep, key: IdempotencyKey = None
) -> DeletedTask:
    return _once(
        container, actor, key, "DELETE /tasks", {"task_id": task_id},
        lambda: container.tasks.delete(actor, task_id), DeletedTask,
    )  # fmt: skip


@router.post("/tasks/{task_id}/complete", summary="Complete a task")
def complete_task(
    task_id: TaskId, actor: CurrentActor, container: ContainerDep, include_subtasks: bool = False,
    key: IdempotencyKey = None,
) -> TaskWritten:  # fmt: skip
    return _once(
        container, actor, key, "POST /tasks/complete",
        {"task_id": task_id, "include_subtasks": include_subtasks},
        lambda: container.tasks.complete(actor, task_id, include_subtasks=include_subtasks), TaskWritten,
    )  # fmt: skip


@router.post("/tasks/{task_id}/reopen", summary="Reopen a completed task")
def reopen_task(
    task_id: TaskId, actor: CurrentActor, container: ContainerDep, key: IdempotencyKey = None
) -> TaskWritten:
    return _once(
        container, actor, key, "POST /tasks/reopen", {"task_id": task_id},
        lambda: container.tasks.reopen(actor, task_id), TaskWritten,
    )  # fmt: skip


@router.put("/tasks/{task_id}/reminder", summary="Set a reminder")
def set_reminder(
    task_id: TaskId,
    body: ReminderRequest,
    actor: CurrentActor,
    container: ContainerDep,
    key: IdempotencyKey = None,
) -> TaskWritten:
    return _once(
        container, actor, key, "PUT /tasks/reminder", {"task_id": task_id, **body.model_dump(mode="json")},
        lambda: container.tasks.set_reminder(
            actor, task_id, at=body.at, minutes_before_due=body.minutes_before_due
        ),
        TaskWritten,
    )  # fmt: skip


@router.delete("/tasks/{task_id}/reminder", summary="Cancel a reminder")
def cancel_reminder(
    task_id: TaskId, actor: CurrentActor, container: ContainerDep, key: IdempotencyKey = None
) -> TaskWritten:
    return _once(
        container, actor, key, "DELETE /tasks/reminder", {"task_id": task_id},
        lambda: container.tasks.cancel_reminder(actor, task_id), TaskWritten,
    )  # fmt: skip


@router.get("/lists", summary="Your lists, Inbox first, with their open task counts")
def list_lists(actor: CurrentActor, container: ContainerDep, include_archived: bool = False) -> Lists:
    return container.tasks.lists(actor, include_archived=include_archived)


@router.post("/lists", status_code=status.HTTP_201_CREATED, summary="Create a list")
def create_list(
    body: NewList, actor: CurrentActor, container: ContainerDep, key: IdempotencyKey = None
) -> ListView:
    return _once(
        container, actor, key, "POST /lists", body.model_dump(mode="json"),
        lambda: container.tasks.create_list(actor, body.name), ListView,
    )  # fmt: skip


@router.patch("/lists/{ref}", summary="Rename, archive or unarchive a list")
def change_list(
    ref: ListPath, body: ListChanges, actor: CurrentActor, container: ContainerDep, key: IdempotencyKey = None
) -> ListView:
    return _once(
        container, actor, key, "PATCH /lists",
        {"list": ref, **body.model_dump(mode="json", exclude_unset=True)},
        lambda: container.tasks.change_list(actor, ref, name=body.name, archived=body.archived), ListView,
    )  # fmt: skip


@router.delete(
    "/lists/{ref}", summary="Delete a list; ?tasks=move_to_inbox|delete says what happens to its tasks"
)
def delete_list(
    ref: ListPath, actor: CurrentActor, container: ContainerDep, tasks: ListTasks | None = None,
    key: IdempotencyKey = None,
) -> DeletedList:  # fmt: skip
    return _once(
        container, actor, key, "DELETE /lists", {"list": ref, "tasks": tasks},
        lambda: container.tasks.delete_list(actor, ref, tasks=tasks), DeletedList,
    )  # fmt: skip


@router.post("/undo", summary="Undo your last change (or change_id): exactly, or refused with 409")
def undo(
    actor: CurrentActor, container: ContainerDep, body: UndoRequest | None = None, key: IdempotencyKey = None
) -> UndoResult:
    change_id = body.change_id if body else None
    return _once(
        container, actor, key, "POST /undo", {"change_id": change_id},
        lambda: container.tasks.undo(actor, change_id), UndoResult,
    )  # fmt: skip


@router.get("/me", summary="Who am I, and my settings")
def me(actor: CurrentActor, container: ContainerDep) -> Me:
    profile = container.profiles.get(actor.user_id)
    return Me(
        **profile.model_dump(),
        auth_required=container.verifier is not None,
        effective_timezone=actor.timezone,
    )


@router.patch("/me", summary="Change my settings (time zone, email, webhook)")
def update_me(changes: ProfileChanges, actor: CurrentActor, container: ContainerDep) -> Me:
    container.profiles.update(actor.user_id, changes)
    return me(actor=container.profiles.actor(actor.user_id), container=container)


def _version_of(if_match: str | None) -> int | None:
    """The version an ``If-Match`` header expects (None: any)."""
    if if_match is None or if_match.strip() in ("", "*"):
        return None
    match = _VERSION_TAG.fullmatch(if_match.strip())
    if match is None:
        raise InvalidInput(
            "If-Match", "If-Match must be the task's version as a number, e.g. '3' or '\"3\"'."
        )
    return int(match.group(1))
