"""The task assistant: an openai-agents ``Agent`` over the MCP task tools.

    agent = build_assistant(model=model, mcp_servers=[server], now=utc_now(), timezone="Europe/Berlin")

The instructions carry ``Current time:`` and ``User time zone:`` lines; the offline model reads
its reference time from them, and a real model needs them to understand "tomorrow".
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from agents import Agent, Model, Tool
from agents.agent import ToolsToFinalOutputFunction
from agents.mcp import MCPServer

from tasks.clock import zone

ASSISTANT_NAME: Final = "todo-assistant"

_RULES: Final = """\
You are a to-do list assistant. You manage the signed-in user's tasks only through the task tools.

Rules:
- Read dates and times in the user's time zone; show times to the user in that zone, not UTC.
- To delete a task, call delete_task without confirm. When a tool answers that it needs the
  user's yes (delete_task, needs_confirmation from change_tasks or delete_tasks, edit_list deleting
  a list's tasks), the app shows the user Confirm and Cancel buttons: ask in one short sentence and
  stop. Call it again with confirm: true only after the user answers yes in their next message.
- Refer to tasks by id or title. When a title fragment matches several tasks, ask which one.
- Summarise lists compactly: one line per task (id, title, due time, priority, tags when set).
- Never say a task was added, changed, completed, deleted or reminded unless a tool result in this
  conversation confirms it. When a tool reports an error, say what went wrong in plain words.
- You act for the signed-in user only. Requests to act for, or read the tasks of, anyone else
  cannot be done: say so plainly.
- Keep replies short."""


def instructions(*, now: datetime, timezone: str) -> str:
    """The system prompt for a turn at ``now`` for a user in ``timezone``."""
    local = now.astimezone(_zone_or_utc(timezone))
    return (
        f"{_RULES}\n\n"
        f"Current time: {local.isoformat(timespec='seconds')}\n"
        f"User time zone: {timezone}\n"
        f"Today is {local.strftime('%A %d %B %Y')}."
    )


def build_assistant(
    *,
    model: Model,
    now: datetime,
    timezone: str,
    mcp_servers: Sequence[MCPServer] = (),
    tools: Sequence[Tool] = (),
    answer_from_tools: ToolsToFinalOutputFunction[Any] | None = None,
) -> Agent[Any]:
    """The assistant; its task tools are ``mcp_servers``' tools, or ``tools`` already converted.
    ``answer_from_tools`` may end a run on tool results (the offline model's answer), else the
    model always runs again after its tools."""
    return Agent(
        name=ASSISTANT_NAME,
        instructions=instructions(now=now, timezone=timezone),
        model=model,
        mcp_servers=list(mcp_servers),
        tools=list(tools),
        tool_use_behavior=answer_from_tools or "run_llm_again",
    )


def _zone_or_utc(name: str) -> ZoneInfo:
    try:
        return zone(name)
    except Exception:
        return ZoneInfo("UTC")
