"""The public shapes of tasks, shared by the MCP tools, the REST API and the event payloads."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from tasks.models import Task, TaskList
from tasks.recurrence import describe

StatusFilter = Literal["pending", "completed", "all"]
PriorityName = Literal["none", "low", "medium", "high"]


class TaskView(BaseModel):
    """A task as its owner sees it. Times are ISO 8601 in UTC."""

    id: int
    title: str
    description: str = ""
    completed: bool = False
    completed_at: datetime | None = None
    priority: PriorityName = "none"
    tags: list[str] = Field(default_factory=list)
    due_at: datetime | None = None
    remind_at: datetime | None = Field(
        default=None, description="When the next reminder fires (None when no reminder is pending)."
    )
    remind_before_minutes: int | None = None
    recurrence: str | None = Field(default=None, description="RFC 5545 RRULE, e.g. FREQ=DAILY.")
    recurrence_text: str | None = None
    repeat_from: Literal["due", "completion"] = "due"
    created_at: datetime | None = None
    updated_at: datetime | None = None
    version: int = 1
    list_id: int | None = Field(default=None, description="The list the task is in.")
    parent_id: int | None = Field(default=None, description="The task this one is a subtask of.")

    @classmethod
    def of(cls, task: Task) -> TaskView:
        assert task.id is not None
        return cls(
            id=task.id,
            title=task.title,
            description=task.description,
            completed=task.completed,
            completed_at=task.completed_at,
            priority=task.priority,  # type: ignore[arg-type]
            tags=task.tags,
            due_at=task.due_at,
            remind_at=pending_reminder(task),
            remind_before_minutes=task.remind_before_minutes,
            recurrence=task.recurrence,
            recurrence_text=describe(task.recurrence),
            repeat_from=task.repeat_from,  # type: ignore[arg-type]
            created_at=task.created_at,
            updated_at=task.updated_at,
            version=task.version,
            list_id=task.list_id,
            parent_id=task.parent_id,
        )


class TaskWritten(TaskView):
    """A task as a write left it, with the change that write made (for ``undo``)."""

    change_id: int | None = Field(default=None, description="Pass to undo to revert exactly this change.")

    @classmethod
    def written(cls, view: TaskView) -> TaskWritten:
        return cls(**dict(view))

    def view(self) -> TaskView:
        """The task alone, as a read or an event's ``task_data`` shows it."""
        return TaskView(**{k: v for k, v in dict(self).items() if k != "change_id"})


class TaskPage(BaseModel):
    """One page of a task list; pass ``next_cursor`` back to get the next page."""

    items: list[TaskView]
    next_cursor: str | None = None


class DeletedTask(BaseModel):
    id: int
    title: str
    deleted: bool = True
    change_id: int | None = Field(default=None, description="Pass to undo to bring the task back.")


class ListView(BaseModel):
    """One of the user's lists; ``open_tasks`` counts its tasks not yet completed."""

    id: int
    name: str
    is_inbox: bool = False
    archived: bool = False
    open_tasks: int = 0
    version: int = 1

    @classmethod
    def of(cls, row: TaskList, open_tasks: int = 0) -> ListView:
        assert row.id is not None
        return cls(
            id=row.id, name=row.name, is_inbox=row.is_inbox, archived=row.archived_at is not None,
            open_tasks=open_tasks, version=row.version,
        )  # fmt: skip


class Lists(BaseModel):
    items: list[ListView]


class DeletedList(BaseModel):
    id: int
    name: str
    deleted: bool = True
    tasks_moved_to_inbox: int = 0
    tasks_deleted: int = 0


class BatchResult(BaseModel):
    """What one batch call changed: one transaction, one event per changed task."""

    action: str
    matched: int = Field(description="How many tasks the ids or the filter named.")
    changed: list[TaskView] = Field(default_factory=list, description="The tasks as they are now.")
    deleted: list[DeletedTask] = Field(default_factory=list)
    unchanged_ids: list[int] = Field(default_factory=list, description="Named, but already so.")
    change_id: int | None = Field(default=None, description="Pass to undo to revert the whole batch.")


def pending_reminder(task: Task) -> datetime | None:
    """When the task's reminder will fire, if one is pending (None once sent, cancelled or unset)."""
    return task.remind_at if task.reminder_state == "pending" else None
