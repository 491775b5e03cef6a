"""The idempotency key of a write tool call: its ``idempotency_key`` argument, or the request's
``_meta`` under ``todo-agent/idempotency-key``.

The argument is for whoever writes the call (a model, a script); the ``_meta`` key is for the
client that sends it, which knows when it sends the same call again (the chat derives one per
tool call of a turn). When both are given the argument wins: it is what the call itself says.

    key = call_key(idempotency_key, ctx.request_context.meta)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from mcp.server.mcpserver.exceptions import ToolError

from tasks.idempotency import MAX_KEY

META_KEY: Final = "todo-agent/idempotency-key"


def call_key(argument: str | None, meta: Mapping[str, Any] | None) -> str | None:
    """The call's key: the argument, else the request's ``_meta`` key, else None."""
    if argument is not None:
        return argument
    key = meta.get(META_KEY) if meta is not None else None
    if key is None:
        return None
    if not isinstance(key, str) or not key or len(key) > MAX_KEY:
        raise ToolError(
            f"_meta {META_KEY} must be a string of 1 to {MAX_KEY} characters. Nothing was changed."
        )
    return key  # its characters are checked with the argument's, by the task service
