"""The public shapes of tasks, shared by the MCP tools, the REST API and the event payloads."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from tasks.models import Task
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
        )


class TaskPage(BaseModel):
    """One page of a task list; pass ``next_cursor`` back to get the next page."""

    items: list[TaskView]
    next_cursor: str | None = None


class DeletedTask(BaseModel):
    id: int
    title: str
    deleted: bool = True


def pending_reminder(task: Task) -> datetime | None:
    """When the task's reminder will fire, if one is pending (None once sent, cancelled or unset)."""
    return task.remind_at if task.reminder_state == "pending" else None
