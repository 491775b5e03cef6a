"""Shape stored SDK items and tool outputs for people and clients.

parse_output('{"id": 1}')   # -> {"id": 1}; text stays text
messages_of(items)          # -> [{"role": "user", "content": "..."}, {"role": "tool", ...}]
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from mcp_server.confirmations import without_confirmation


def _text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return str(value.get("text", "")) if "text" in value else json.dumps(value)
    if isinstance(value, list):
        return "".join(_text_of(part) for part in value)
    return "" if value is None else str(value)


def parse_output(output: Any) -> Any:
    """A tool output as a JSON value when it is JSON, else as its text; a refused call's
    confirmation block is left out (it is data for the chat: ``confirmation_in``)."""
    if isinstance(output, dict | list) and not _is_text_parts(output):
        return output
    output = without_confirmation(output)
    text = _text_of(output)
    try:
        return json.loads(text)
    except (json.JSONDecodeError, ValueError):
        return text


def _is_text_parts(value: Any) -> bool:
    parts = value if isinstance(value, list) else [value]
    return all(isinstance(p, dict) and p.get("type") in ("text", "input_text", "output_text") for p in parts)


def parse_arguments(arguments: str | None) -> dict[str, Any]:
    try:
        value = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        return {"raw": arguments}
    return value if isinstance(value, dict) else {"value": value}


def messages_of(items: Sequence[Any]) -> list[dict[str, Any]]:
    """User and assistant messages and tool results, in order, from stored SDK items."""
    calls: dict[str, dict[str, Any]] = {}
    messages: list[dict[str, Any]] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message")
        if kind == "message" and item.get("role") in ("user", "assistant"):
            messages.append({"role": item["role"], "content": _text_of(item.get("content"))})
        elif kind == "function_call":
            calls[str(item.get("call_id"))] = item
        elif kind == "function_call_output":
            call = calls.get(str(item.get("call_id")), {})
            messages.append(
                {
                    "role": "tool",
                    "call_id": str(item.get("call_id")),
                    "name": call.get("name", "tool"),
                    "arguments": parse_arguments(call.get("arguments")),
                    "content": parse_output(item.get("output")),
                }
            )
    return messages


def assistant_message(text: str) -> dict[str, Any]:
    """An assistant reply as the SDK stores a model's output message."""
    return {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }
