"""The final message after a tool ran: only what the tool's result confirms."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from agent.offline.commands import ToolCommand
from agent.offline.formatting import describe_list, describe_task, format_when
from agent.offline.results import ToolResult

#: What the offline model says when a batch needs a yes; the next "yes" sends it with confirm.
CONFIRM_BATCH: Final = "Say yes to go ahead"
_VERBS: Final = {
    "complete": "Completed", "reopen": "Reopened", "move": "Moved", "tag": "Tagged",
    "untag": "Untagged", "reschedule": "Rescheduled", "delete": "Deleted", "add": "Added",
}  # fmt: skip


def _batch(command: ToolCommand, data: dict[str, Any]) -> str:
    action = str(data.get("action") or command.arguments.get("action") or "delete")
    done = data.get("deleted") if action == "delete" else data.get("changed")
    done = done if isinstance(done, list) else []
    if not done:
        return "Nothing matched, so nothing changed."
    names = ", ".join(f"#{t.get('id')} {t.get('title')}" for t in done[:10]) + (
        " …" if len(done) > 10 else ""
    )
    noun = "task" if len(done) == 1 else "tasks"
    return f'{_VERBS.get(action, "Changed")} {len(done)} {noun}: {names}. Say "undo" to take it back.'


def _lists(items: list[dict[str, Any]]) -> str:
    shown = ", ".join(f"{i.get('name')} ({i.get('open_tasks', 0)} open)" for i in items)
    return f"Your lists: {shown}." if shown else "You have no lists yet."


def _needs_yes(result: ToolResult) -> str | None:
    """What to say when the tool refused a batch until the person says yes."""
    needed = result.confirmation
    if needed is None or needed.tool not in ("change_tasks", "delete_tasks"):
        return None
    action = str(needed.arguments.get("action", "delete"))
    return f"That would {action} {needed.count} tasks. {CONFIRM_BATCH}, or no to leave them."


def _verb(command: ToolCommand) -> str:
    if command.tool == "update_task" and command.arguments.get("completed") is False:
        return "Reopened"
    return {"add_task": "Added", "complete_task": "Completed", "delete_task": "Deleted"}.get(
        command.tool, "Updated"
    )


def _next_occurrence(data: dict[str, Any]) -> dict[str, Any] | None:
    for key in ("next_occurrence", "next_task", "next"):
        if isinstance(data.get(key), dict) and "id" in data[key]:
            return dict(data[key])
    return None


def _reminder(command: ToolCommand, result: ToolResult, zone: ZoneInfo, now: datetime) -> str:
    task = result.task or {}
    name = (
        describe_task(task, zone, now, check=False)
        if task
        else f"task #{command.call_arguments().get('task_id')}"
    )
    if command.arguments.get("cancel"):
        return f"Cancelled the reminder for {name}."
    when = format_when(task.get("remind_at") or result.data.get("remind_at"), zone, now)
    return f"Reminder set for {name}." if when is None else f"Reminder set for {when}: {name}."


def summarise(command: ToolCommand, result: ToolResult, zone: ZoneInfo, now: datetime) -> str:
    """ "Added #4 Buy milk — due Fri 27 Nov 17:00 (high, #groceries)." or the tool's error."""
    if result.error is not None:
        return _needs_yes(result) or f"Sorry, that didn't work: {result.error}"
    if command.tool in ("change_tasks", "delete_tasks"):
        return _batch(command, result.data)
    if command.tool == "lists":
        return _lists(result.items or [])
    if command.tool == "undo":
        return f"Done. {result.data.get('summary', 'Undone')}."
    if command.tool == "list_tasks":
        if result.items is None:
            return f"The task list came back in a shape I don't understand: {json.dumps(result.data)}"
        return describe_list(result.items, zone, now, more=bool(result.next_cursor))
    if command.tool == "set_reminder":
        return _reminder(command, result, zone, now)
    if result.task is None:
        task_id = command.call_arguments().get("task_id")
        if command.tool == "delete_task" and result.data.get("deleted") is not False:
            return f"Deleted task #{task_id}."
        return f"{command.tool} returned: {json.dumps(result.data)}"
    text = f"{_verb(command)} {describe_task(result.task, zone, now, check=False)}."
    if (upcoming := _next_occurrence(result.data)) is not None:
        text += f" Next: {describe_task(upcoming, zone, now)}."
    elif (next_due := format_when(result.data.get("next_occurrence_due_at"), zone, now)) is not None:
        text += f" The next one is due {next_due}."
    return text
