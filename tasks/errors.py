"""Errors a person can act on, raised by the use cases and shown as-is at the edges."""

from __future__ import annotations


class TaskError(Exception):
    """Base class: the message is written for the person who made the request."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TaskNotFound(TaskError):
    def __init__(self, task_id: int) -> None:
        super().__init__(f"Task {task_id} not found.")
        self.task_id = task_id


class InvalidInput(TaskError):
    """A field's value cannot be used; says which field, why and what would work."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class VersionConflict(TaskError):
    def __init__(self, task_id: int, expected: int, actual: int) -> None:
        super().__init__(
            f"Task {task_id} was changed by someone else (version {actual}, you had {expected}); "
            "reload it and try again."
        )
        self.task_id = task_id


class Conflict(TaskError):
    """The request cannot be applied to the data as it is now (HTTP 409); nothing was written."""


class NeedsConfirmation(Conflict):
    """A batch by filter would change more tasks than a person should change by accident.

    The hook for a confirmation step (an MCP elicitation, a dialog): ask the person about
    ``count`` tasks, then call again with ``confirm`` set."""

    def __init__(self, action: str, count: int, threshold: int) -> None:
        super().__init__(
            f"This would {action} {count} tasks (more than {threshold}); nothing was changed. "
            "Call again with confirm=true to go ahead."
        )
        self.action = action
        self.count = count
        self.threshold = threshold


class UndoRefused(Conflict):
    """An undo that cannot be exact: the change is unknown, already undone, or its tasks changed."""
