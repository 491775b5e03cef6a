"""The "needs the user's yes" tool errors, written and read in one place.

A client that cannot be asked mid-call (no elicitation) gets a tool error instead of a question:
deleting a task, a batch by filter over ``CONFIRM_OVER`` tasks, or deleting a list with its tasks.
The tools write those errors with the functions below; a client that wants to ask the person
itself (the chat's Confirm button) reads one back with ``needed_confirmation``::

    needed = needed_confirmation("delete_task", {"task_id": 5}, error_text)
    if needed is not None:
        ask(needed.question)          # "Delete task #5 'Buy milk' and its subtasks?"
        call("delete_task", needed.arguments)   # the same call with confirm: true

Only the tool's own words count, never what a model said about them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

#: What a batch's tool error starts with (``NeedsConfirmationError``), then the service's message.
BATCH_PREFIX: Final = "needs_confirmation: "
_DELETE_TASK: Final = re.compile(r"^Deleting task (\d+) '(.*)' needs the user's yes: ", re.DOTALL)
_DELETE_LIST: Final = re.compile(
    r"^Deleting the list '(.*)' with tasks='delete' deletes its (\d+) tasks too", re.DOTALL
)
_BATCH: Final = re.compile(r"^needs_confirmation: This would (\w+) (\d+) tasks ")
_BATCH_TOOLS: Final = ("change_tasks", "delete_tasks")


def delete_task_needs_yes(task_id: int, title: str) -> str:
    return (
        f"Deleting task {task_id} '{title}' needs the user's yes: ask them, and call "
        "delete_task again with confirm: true once they say yes. Nothing was deleted."
    )


def delete_list_needs_yes(list_ref: str, count: int) -> str:
    return (
        f"Deleting the list '{list_ref}' with tasks='delete' deletes its {count} tasks too: ask the "
        "user, and call edit_list again with confirm: true once they say yes. Nothing was deleted."
    )


@dataclass(frozen=True)
class NeededConfirmation:
    """A tool call that needs the person's yes: what to ask, and the call to make after a yes."""

    tool: str
    arguments: dict[str, Any]
    question: str
    count: int | None = None


def needed_confirmation(tool: str, arguments: dict[str, Any], error: str) -> NeededConfirmation | None:
    """The confirmation a tool error asks for, or None when the error is about anything else.
    ``arguments`` are the refused call's; the returned ones add ``confirm: true``."""
    again = {key: value for key, value in arguments.items() if key != "idempotency_key"} | {"confirm": True}
    error = error.removeprefix(f"Error executing tool {tool}: ")  # how the SDK hands a tool error on
    if tool == "delete_task" and (found := _DELETE_TASK.match(error)):
        question = f"Delete task #{found[1]} '{found[2]}' and its subtasks?"
        return NeededConfirmation(tool, again, question, count=1)
    if tool == "edit_list" and (found := _DELETE_LIST.match(error)):
        count = int(found[2])
        question = f"Delete the list '{found[1]}' and its {count} {_tasks(count)}?"
        return NeededConfirmation(tool, again, question, count=count)
    if tool in _BATCH_TOOLS and (found := _BATCH.match(error)):
        count = int(found[2])
        verb = found[1].capitalize()
        what = "(with their subtasks)" if tool == "delete_tasks" else "matching the filter"
        return NeededConfirmation(tool, again, f"{verb} {count} {_tasks(count)} {what}?", count=count)
    return None


def _tasks(count: int) -> str:
    return "task" if count == 1 else "tasks"
