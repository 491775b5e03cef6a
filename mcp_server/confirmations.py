"""The "needs the user's yes" tool errors: written here, and read back here as data.

A client that cannot be asked mid-call (no elicitation) gets a tool error instead of a question:
deleting a task, a batch by filter over ``CONFIRM_OVER`` tasks, or deleting a list with its tasks.
A tool raises ``ConfirmationNeeded``; the server answers with an error result (``isError``) whose
first text block is the sentence people and models read, and which carries the confirmation as
data (``NeededConfirmation``: the tool, the arguments to call it with after a yes, the question,
the count, the task's or list's title) twice:

- in the result's ``_meta`` under ``todo-agent/confirmation``, for MCP clients that read it;
- as a second text block, that object as JSON, for clients that pass on only a result's content:
  the agents SDK hands the model (and so the chat's conversation memory) the content alone.

Not as ``structuredContent``: a tool's output schema describes its success, and some clients
check ``structuredContent`` against it even on an error result.

    needed = confirmation_of(result)      # from a CallToolResult
    needed = confirmation_in(output)      # from a tool output as a conversation keeps it
    if needed is not None:
        ask(needed.question)              # "Delete task #5 'Buy milk' and its subtasks?"
        call(needed.tool, needed.arguments)   # the same call with confirm: true

Only the tool's own result counts, never what a model said about it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final

from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent

from tasks.errors import NeedsConfirmation

#: Where a refused call's confirmation rides in the result's ``_meta`` (and its JSON text block).
META_KEY: Final = "todo-agent/confirmation"
#: What a batch's tool error starts with, then the service's message.
BATCH_PREFIX: Final = "needs_confirmation: "
#: The tools that may ask, and so the only ones whose confirmation is believed.
ASKING_TOOLS: Final = frozenset({"delete_task", "edit_list", "change_tasks", "delete_tasks"})
_NOT_REPEATED: Final = ("idempotency_key", "confirm")


@dataclass(frozen=True)
class NeededConfirmation:
    """A tool call that needs the person's yes: what to ask, and the call to make after a yes."""

    tool: str
    #: The refused call's arguments with ``confirm: true`` (no idempotency key: the caller's own).
    arguments: dict[str, Any]
    question: str
    count: int | None = None
    #: The task's title (``delete_task``) or the list's name (``edit_list``).
    title: str | None = None

    def data(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_data(cls, data: Any) -> NeededConfirmation | None:
        """The confirmation ``data`` describes, or None when it is not one of ours."""
        if not isinstance(data, Mapping) or data.get("tool") not in ASKING_TOOLS:
            return None
        arguments, question = data.get("arguments"), data.get("question")
        count, title = data.get("count"), data.get("title")
        if not isinstance(arguments, dict) or arguments.get("confirm") is not True:
            return None
        if not isinstance(question, str) or not _optional(count, int) or not _optional(title, str):
            return None
        return cls(str(data["tool"]), dict(arguments), question, count, title)

    def result(self, text: str) -> CallToolResult:
        """The tool's error result: ``text`` for people and models, then the data."""
        data = {META_KEY: self.data()}
        blocks = [TextContent(type="text", text=text), TextContent(type="text", text=json.dumps(data))]
        return CallToolResult(content=list(blocks), is_error=True, _meta=data)


class ConfirmationNeeded(ToolError):
    """Raised by a tool that needs the person's yes; the server answers it with ``result``."""

    def __init__(self, text: str, needed: NeededConfirmation) -> None:
        super().__init__(text)
        self.needed = needed


def delete_task_needs_yes(task_id: int, title: str) -> ConfirmationNeeded:
    text = (
        f"Deleting task {task_id} '{title}' needs the user's yes: ask them, and call "
        "delete_task again with confirm: true once they say yes. Nothing was deleted."
    )
    question = f"Delete task #{task_id} '{title}' and its subtasks?"
    again = {"task_id": task_id, "confirm": True}
    return ConfirmationNeeded(text, NeededConfirmation("delete_task", again, question, 1, title))


def delete_list_needs_yes(list_ref: str, count: int) -> ConfirmationNeeded:
    text = (
        f"Deleting the list '{list_ref}' with tasks='delete' deletes its {count} tasks too: ask the "
        "user, and call edit_list again with confirm: true once they say yes. Nothing was deleted."
    )
    question = f"Delete the list '{list_ref}' and its {count} {_tasks(count)}?"
    again = {"action": "delete", "list": list_ref, "tasks": "delete", "confirm": True}
    return ConfirmationNeeded(text, NeededConfirmation("edit_list", again, question, count, list_ref))


def batch_needs_yes(
    tool: str, arguments: Mapping[str, Any], refused: NeedsConfirmation
) -> ConfirmationNeeded:
    """A batch by filter over the threshold (``tool`` is change_tasks or delete_tasks)."""
    what = "(with their subtasks)" if tool == "delete_tasks" else "matching the filter"
    question = f"{refused.action.capitalize()} {refused.count} {_tasks(refused.count)} {what}?"
    again = {k: v for k, v in arguments.items() if v is not None and k not in _NOT_REPEATED}
    needed = NeededConfirmation(tool, again | {"confirm": True}, question, refused.count)
    return ConfirmationNeeded(f"{BATCH_PREFIX}{refused.message}", needed)


def confirmation_of(result: CallToolResult) -> NeededConfirmation | None:
    """The confirmation an error result asks for (from its ``_meta``), else None."""
    if not result.is_error or not isinstance(result.meta, Mapping):
        return None
    return NeededConfirmation.from_data(result.meta.get(META_KEY))


def confirmation_in(output: Any) -> NeededConfirmation | None:
    """The confirmation in a tool output as an agent run keeps it (its content blocks, as text
    parts), else None."""
    for text in _texts(output):
        if (data := _data_block(text)) is not None:
            return NeededConfirmation.from_data(data.get(META_KEY))
    return None


def without_confirmation(output: Any) -> Any:
    """``output`` without its confirmation block: what people and the transcript read."""
    if not isinstance(output, list):
        return output
    return [part for part in output if not any(_data_block(text) is not None for text in _texts(part))]


def _texts(output: Any) -> list[str]:
    parts = output if isinstance(output, list) else [output]
    texts = []
    for part in parts:
        text = part.get("text") if isinstance(part, Mapping) else getattr(part, "text", None)
        if isinstance(text, str):
            texts.append(text)
    return texts


def _data_block(text: str) -> dict[str, Any] | None:
    """A block that is exactly ``{"todo-agent/confirmation": ...}``: never a sentence that quotes it."""
    if not text.startswith('{"' + META_KEY):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) and list(data) == [META_KEY] else None


def _optional(value: Any, kind: type) -> bool:
    return value is None or (isinstance(value, kind) and not isinstance(value, bool))


def _tasks(count: int) -> str:
    return "task" if count == 1 else "tasks"
