"""The REST task API (for the web UI and plain HTTP clients): the same use cases as MCP."""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal

from fastapi import APIRouter, Header, Path, Query, status
from pydantic import BaseModel, Field

from tasks.errors import InvalidInput
from tasks.inputs import (
    MAX_CURSOR,
    MAX_ID,
    MAX_SEARCH,
    MAX_WHEN,
    Minutes,
    TaskChanges,
    TaskDraft,
    TaskQuery,
    Text,
    When,
)
from tasks.profiles import Profile, ProfileChanges
from tasks.schemas import DeletedTask, PriorityName, TaskPage, TaskView
from todo_agent.deps import ContainerDep, CurrentActor

router = APIRouter(prefix="/api", tags=["tasks"])
#: ``If-Match``: a version as this API gives it out (``3``, ``"3"`` or ``W/"3"``), or ``*``.
_VERSION_TAG: Final = re.compile(r'(?:W/)?"?([0-9]{1,18})"?', re.ASCII)
TaskId = Annotated[int, Path(ge=1, le=MAX_ID, description="The task's id.")]


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
) -> TaskPage:
    query = TaskQuery(
        status=status_, due_before=due_before, due_after=due_after, overdue=overdue, tag=tag,
        priority=priority, search=search, limit=limit, cursor=cursor,
    )  # fmt: skip
    return container.tasks.list(actor, query)


@router.post("/tasks", status_code=status.HTTP_201_CREATED, summary="Add a task")
def add_task(draft: TaskDraft, actor: CurrentActor, container: ContainerDep) -> TaskView:
    return container.tasks.add(actor, draft)


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
) -> TaskView:
    return container.tasks.update(actor, task_id, changes, expected_version=_version_of(if_match))


@router.delete("/tasks/{task_id}", summary="Delete a task")
def delete_task(task_id: TaskId, actor: CurrentActor, container: ContainerDep) -> DeletedTask:
    return container.tasks.delete(actor, task_id)


@router.post("/tasks/{task_id}/complete", summary="Complete a task")
def complete_task(task_id: TaskId, actor: CurrentActor, container: ContainerDep) -> TaskView:
    return container.tasks.complete(actor, task_id)


@router.post("/tasks/{task_id}/reopen", summary="Reopen a completed task")
def reopen_task(task_id: TaskId, actor: CurrentActor, container: ContainerDep) -> TaskView:
    return container.tasks.reopen(actor, task_id)


@router.put("/tasks/{task_id}/reminder", summary="Set a reminder")
def set_reminder(
    task_id: TaskId, body: ReminderRequest, actor: CurrentActor, container: ContainerDep
) -> TaskView:
    return container.tasks.set_reminder(
        actor, task_id, at=body.at, minutes_before_due=body.minutes_before_due
    )


@router.delete("/tasks/{task_id}/reminder", summary="Cancel a reminder")
def cancel_reminder(task_id: TaskId, actor: CurrentActor, container: ContainerDep) -> TaskView:
    return container.tasks.cancel_reminder(actor, task_id)


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
