"""Read a ``function_call_output`` the way the SDK hands it to the model.

An MCP tool result reaches the model as a JSON string (structured content), as a list of
``{"type": "input_text", "text": ...}`` parts (text content, also used for tool errors), or as
plain text such as "Task 42 not found". A local ``function_tool`` returning a dict arrives as
its ``str()``. ``decode_output`` turns all of these into a ``ToolResult``; a refused call's
confirmation (``mcp_server.confirmations``) comes with it as data, apart from the error's text.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field, replace
from typing import Any, Final

from mcp_server.confirmations import NeededConfirmation, confirmation_in, without_confirmation

_SDK_ERROR_PREFIX: Final = "An error occurred while running the tool. Please try again. Error: "


@dataclass(frozen=True)
class ToolResult:
    """A task, a page of tasks, other JSON data, or the text of an error."""

    task: dict[str, Any] | None = None
    items: list[dict[str, Any]] | None = None
    next_cursor: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    #: What the tool needs the person's yes to (a refused delete or batch).
    confirmation: NeededConfirmation | None = None


def _text_of(output: Any) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, dict):
        return str(output.get("text", "")) if "text" in output else json.dumps(output)
    if isinstance(output, list):
        return "\n".join(_text_of(part) for part in output)
    return str(output)


def _load(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


def _from_value(value: Any, text: str) -> ToolResult:
    if isinstance(value, dict) and value.get("type") == "text" and isinstance(value.get("text"), str):
        return decode_output(value["text"])
    if isinstance(value, list) and all(isinstance(item, dict) and "id" in item for item in value):
        return ToolResult(items=value)
    if not isinstance(value, dict):
        return ToolResult(error=text.removeprefix(_SDK_ERROR_PREFIX).strip() or "No result.")
    if isinstance(value.get("error"), str):
        return ToolResult(error=value["error"], data=value)
    if isinstance(value.get("items"), list):
        return ToolResult(items=value["items"], next_cursor=value.get("next_cursor"), data=value)
    if isinstance(value.get("task"), dict):
        return ToolResult(task=value["task"], data=value)
    if "id" in value and "title" in value:
        return ToolResult(task=value, data=value)
    return ToolResult(data=value)


def decode_output(output: Any) -> ToolResult:
    if (needed := confirmation_in(output)) is not None:
        return replace(decode_output(without_confirmation(output)), confirmation=needed)
    if isinstance(output, list) and len(output) > 1:
        parts = [decode_output(part) for part in output]
        if all(part.task is not None for part in parts):
            return ToolResult(items=[part.task for part in parts if part.task is not None])
    text = _text_of(output).strip()
    return _from_value(_load(text), text)
