"""Decide the offline model's next move from the conversation so far.

The model keeps no state between calls: everything it needs is in the input items. After the
latest user message it either calls a tool, looks a task up by title first, asks a question
(which task? really delete?), or summarises what the last tool result confirmed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from agent.offline.commands import Answer, Choice, Command, Reply, ToolCommand
from agent.offline.formatting import (
    CONFIRM_DELETE,
    HELP_TEXT,
    WHICH_ONE,
    ask_delete,
    ask_which,
)
from agent.offline.parser import parse_command
from agent.offline.results import decode_output
from agent.offline.summary import CONFIRM_BATCH, summarise


@dataclass(frozen=True)
class Say:
    text: str


@dataclass(frozen=True)
class Call:
    tool: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class _Turn:
    """A user message, the assistant message before it, and the tool calls answered since."""

    text: str
    previous_assistant: str
    earlier_user: str
    calls: list[tuple[str, Any]]


def _get(item: Any, key: str) -> Any:
    return item.get(key) if isinstance(item, dict) else getattr(item, key, None)


def message_text(item: Any) -> str:
    content = _get(item, "content")
    if isinstance(content, str):
        return content
    return "".join(str(_get(part, "text") or "") for part in content or [])


def _role(item: Any) -> str | None:
    kind = _get(item, "type")
    return _get(item, "role") if kind in (None, "message") else None


def _turn(items: Sequence[Any]) -> _Turn | None:
    users = [i for i, item in enumerate(items) if _role(item) == "user"]
    if not users:
        return None
    last = users[-1]
    before = [message_text(item) for item in items[:last] if _role(item) == "assistant"]
    prior = [message_text(items[i]) for i in users[:-1]]
    names = {_get(i, "call_id"): _get(i, "name") for i in items[last:] if _get(i, "type") == "function_call"}
    calls = [
        (names.get(_get(item, "call_id")) or "", _get(item, "output"))
        for item in items[last:]
        if _get(item, "type") == "function_call_output"
    ]
    return _Turn(message_text(items[last]), before[-1] if before else "", prior[-1] if prior else "", calls)


def _in_context(command: Command, turn: _Turn, now: datetime) -> tuple[Command, bool]:
    """Resolve "yes"/"no"/"3" against the question asked; the flag says a delete is confirmed."""
    asked = turn.previous_assistant
    if CONFIRM_DELETE in asked and (found := re.match(r"Delete (?:task )?#(\d+)", asked)):
        if isinstance(command, Answer):
            if not command.confirmed:
                return Reply(f"OK, I kept task #{found[1]}."), False
            return ToolCommand("delete_task", {}).with_task_id(int(found[1])), True
    if CONFIRM_BATCH in asked and isinstance(command, Answer):
        original = parse_command(turn.earlier_user, now=now)
        if not command.confirmed or not isinstance(original, ToolCommand):
            return Reply("OK, I left them as they are."), False
        return ToolCommand(original.tool, {**original.arguments, "confirm": True}), False
    if WHICH_ONE in asked and isinstance(command, Choice | Answer):
        original = parse_command(turn.earlier_user, now=now)
        if isinstance(command, Choice) and isinstance(original, ToolCommand):
            return original.with_task_id(command.task_id), False
        if isinstance(command, Answer) and not command.confirmed:
            return Reply("OK, never mind."), False
    if isinstance(command, Answer):
        return Reply("There is nothing waiting for a yes or no right now.\n" + HELP_TEXT), False
    if isinstance(command, Choice):
        n = command.task_id
        return Reply(
            f'What should I do with task #{n}? For example "complete {n}", '
            f'"move {n} to friday 6pm" or "delete {n}".'
        ), False
    return command, False


def _pick(command: ToolCommand, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    fragment = (command.ref.fragment if command.ref else None) or ""
    exact = [t for t in items if str(t.get("title", "")).lower() == fragment.lower()]
    if len(items) > 1 and len(exact) == 1:
        return exact
    want_completed = {"complete_task": False}.get(command.tool)
    if command.arguments.get("completed") is False:
        want_completed = True
    if len(items) > 1 and want_completed is not None:
        narrowed = [t for t in items if bool(t.get("completed")) == want_completed]
        if len(narrowed) == 1:
            return narrowed
    return items


def next_step(items: Sequence[Any], *, now: datetime) -> Say | Call:
    """The next tool call or reply. ``now`` is the reference time in the user's zone."""
    zone = now.tzinfo if isinstance(now.tzinfo, ZoneInfo) else ZoneInfo("UTC")
    turn = _turn(items)
    if turn is None:
        return Say(HELP_TEXT)
    command, confirmed = _in_context(parse_command(turn.text, now=now), turn, now)
    if isinstance(command, Reply | Answer | Choice):
        return Say(command.text if isinstance(command, Reply) else HELP_TEXT)
    calls, title = list(turn.calls), None
    if command.maybe_list is not None:  # "add milk to groceries": is groceries one of the lists?
        if not calls:
            return Call("lists", {})
        shown = decode_output(calls.pop(0)[1])
        name, with_list = command.maybe_list
        names = {str(i.get("name", "")).lower(): str(i.get("name")) for i in shown.items or []}
        arguments = {**with_list, "list": names[name.lower()]} if name.lower() in names else command.arguments
        command = replace(command, arguments=arguments, maybe_list=None)
    if command.needs_lookup and command.ref is not None:
        fragment = command.ref.fragment or ""
        if not calls:
            return Call("list_tasks", {"status": "all", "search": fragment})
        found = decode_output(calls.pop(0)[1])
        if found.items is None:
            return Say(f'I couldn\'t look up "{fragment}": {found.error or json.dumps(found.data)}')
        matches = _pick(command, found.items)
        if not matches:
            return Say(f'I couldn\'t find a task matching "{fragment}".')
        if len(matches) > 1:
            return Say(ask_which(fragment, matches, zone, now))
        command, title = command.with_task_id(int(matches[0]["id"])), matches[0].get("title")
    if not calls:
        arguments = command.call_arguments()
        if command.tool == "delete_task" and confirmed:  # the user said yes to our question
            arguments["confirm"] = True
        return Call(command.tool, arguments)
    result = decode_output(calls[-1][1])
    if command.tool == "delete_task" and command.ref and command.ref.id and not confirmed:
        needed = result.confirmation
        if needed is not None and needed.tool == "delete_task":  # the tool wants the user's yes: ask
            return Say(ask_delete(command.ref.id, title or needed.title or None))
    return Say(summarise(command, result, zone, now))
