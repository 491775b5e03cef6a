"""What the offline parser understood from one user message.

A message becomes exactly one of:

- ``ToolCommand``: a call to one MCP tool. When ``ref`` names a task by a title fragment the
  task id is not known yet; the conversation first searches for it and fills in ``task_id``.
- ``Answer``: "yes"/"no" to a question the assistant asked (for example a delete confirmation).
- ``Choice``: a bare task id, the answer to "which one did you mean?".
- ``Reply``: text to say back without calling a tool (help, "I didn't understand").
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal, TypeAlias

ToolName: TypeAlias = Literal[
    "add_task", "update_task", "complete_task", "delete_task", "list_tasks", "set_reminder",
    "change_tasks", "delete_tasks", "lists", "undo",
]  # fmt: skip

TOOL_NAMES: Final[tuple[ToolName, ...]] = (
    "add_task",
    "update_task",
    "complete_task",
    "delete_task",
    "list_tasks",
    "set_reminder",
    "change_tasks",
    "delete_tasks",
    "lists",
    "undo",
)


@dataclass(frozen=True)
class TaskRef:
    """A task named by its id or by a fragment of its title."""

    id: int | None = None
    fragment: str | None = None


@dataclass(frozen=True)
class ToolCommand:
    """One tool call; ``arguments`` excludes ``task_id`` while ``ref`` is unresolved."""

    tool: ToolName
    arguments: dict[str, Any] = field(default_factory=dict)
    ref: TaskRef | None = None
    #: The argument the looked-up task's id goes in: ``parent_id`` for "add a subtask ... to X".
    ref_argument: str = "task_id"
    #: "add milk to groceries": (the list's name, the arguments if it is one of the user's
    #: lists); ``arguments`` are what to add when it is not (the words stay in the title).
    maybe_list: tuple[str, dict[str, Any]] | None = None

    @property
    def needs_lookup(self) -> bool:
        return self.ref is not None and self.ref.id is None

    def with_task_id(self, task_id: int) -> ToolCommand:
        return replace(self, ref=TaskRef(id=task_id))

    def call_arguments(self) -> dict[str, Any]:
        """The arguments to send, with ``task_id`` first when the task is known."""
        if self.ref is not None and self.ref.id is not None:
            return {self.ref_argument: self.ref.id, **self.arguments}
        return dict(self.arguments)


@dataclass(frozen=True)
class Answer:
    confirmed: bool


@dataclass(frozen=True)
class Choice:
    task_id: int


@dataclass(frozen=True)
class Reply:
    text: str


Command: TypeAlias = ToolCommand | Answer | Choice | Reply
