"""Lists, subtasks, batches and undo in the offline model's words.

"add milk to groceries"            -> add_task (after ``lists`` says groceries is a list)
"add a subtask pack passport to trip" -> add_task with parent_id (after a lookup of "trip")
"show my work list"                -> list_tasks {"list": "work"};  "my lists" -> lists
"complete everything tagged home"  -> change_tasks {"action": "complete", "filter": {"tag": "home"}}
"move all overdue tasks to tomorrow" -> change_tasks {"action": "reschedule", ...}
"undo that"                        -> undo
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Final

from agent.offline.adding import add_arguments
from agent.offline.commands import Command, Reply, TaskRef, ToolCommand
from agent.offline.listing import list_arguments
from agent.offline.phrases import take_date

_I = re.IGNORECASE
_NAME: Final = r"[a-z][\w'&-]*(?:\s+[a-z][\w'&-]*){0,2}"
#: "... to groceries", "... on my work list", "... into the Trip list".
_TO_LIST: Final = re.compile(
    rf"^(?P<rest>.+?)\s+(?:to|on|onto|in|into)\s+(?:(?:the|my)\s+)?(?P<name>{_NAME}?)(?P<marked>\s+list)?$",
    _I,
)
_NOT_LISTS: Final = {
    "todo",
    "to-do",
    "todos",
    "list",
    "tasks",
    "task",
    "task list",
    "todo list",
    "to-do list",
}
_UNDO: Final = re.compile(
    r"^(?:undo|revert|reverse|take back|roll back)(?:\s+(?:that|it|this|the last (?:change|thing|action|one)"
    r"|my last (?:change|action)|what you just did|the last thing you did))?$"
    r"|^(?:oops,?\s+)?(?:undo|revert)\s+please$"
    r"|^take (?:that|it|this) back$",
    _I,
)
_MY_LISTS: Final = re.compile(
    r"^(?:(?:show|list|display|view|see|what are)(?: me)?\s+)?(?:all\s+)?(?:my|the)\s+lists"
    r"|^what lists (?:do i have|are there)|^which lists (?:do i have|are there)|^lists$",
    _I,
)
_SHOW_LIST: Final = re.compile(
    rf"^(?:show|list|display|view|open|see|get|what'?s|whats|what is|what do i have)(?:\s+me)?"
    rf"(?:\s+(?:in|on))?\s+(?:the\s+|my\s+)?(?P<name>{_NAME}?)\s+list$",
    _I,
)
_SUBTASK: Final = [
    re.compile(
        r"^(?:add|create)\s+(?:a\s+|another\s+)?sub-?task\s+(?P<rest>.+?)\s+(?:to|under|for|on|of|in)\s+(?P<ref>.+)$",
        _I,
    ),
    re.compile(
        r"^(?:add|create)\s+(?P<rest>.+?)\s+as\s+(?:a\s+)?sub-?task\s+(?:of|to|under|for)\s+(?P<ref>.+)$", _I
    ),
    re.compile(r"^(?:under|for)\s+(?P<ref>.+?),?\s+add\s+(?:a\s+)?(?:sub-?task\s+)?(?P<rest>.+)$", _I),
]
_ALL: Final = (
    r"(?:all(?:\s+(?:of\s+)?(?:my|the))?|everything|every(?:\s+single)?\s+task)(?:\s+(?:tasks|todos|items))?"
)
_BATCH_DONE: Final = re.compile(
    rf"^(?:complete|finish|check off|tick off|close|mark|do)\s+{_ALL}(?P<rest>.*?)"
    r"(?:\s+(?:as\s+)?(?:done|complete|completed|finished))?$",
    _I,
)
_ALL_X_DONE: Final = re.compile(
    r"^(?:complete|finish|check off|tick off|mark)\s+all\s+(?:(?:my|the)\s+)?"
    r"(?P<tag>[a-z][\w-]*)\s+(?:tasks|todos|items)(?:\s+(?:as\s+)?(?:done|complete|completed|finished))?$",
    _I,
)
_BATCH_MOVE: Final = re.compile(
    rf"^(?:move|reschedule|postpone|push|shift|defer|put)\s+{_ALL}(?P<rest>.*?)\s+(?:to|until|till|into|onto|for)\s+(?P<to>.+)$",
    _I,
)
_BATCH_REOPEN: Final = re.compile(rf"^(?:reopen|re-open|uncomplete)\s+{_ALL}(?P<rest>.*)$", _I)
_BATCH_DELETE: Final = re.compile(rf"^(?:delete|remove|clear|trash|get rid of)\s+{_ALL}(?P<rest>.*)$", _I)
_IN_LIST: Final = re.compile(rf"\s*\b(?:in|on|from)\s+(?:(?:the|my)\s+)?(?P<name>{_NAME}?)(?:\s+list)\b", _I)
_IN_BARE: Final = re.compile(rf"^\s*(?:in|on|from)\s+(?:(?:the|my)\s+)?(?P<name>{_NAME})$", _I)


def parse_depth(text: str, now: datetime) -> Command | None:
    """The command for a message about lists, subtasks, batches or undo; None: none of these."""
    if _UNDO.match(text):
        return ToolCommand("undo", {})
    if _MY_LISTS.match(text):
        return ToolCommand("lists", {})
    if (shown := _SHOW_LIST.match(text)) is not None and _is_list_name(shown["name"]):
        return ToolCommand("list_tasks", {"list": shown["name"]})
    for pattern in _SUBTASK:
        if (sub := pattern.match(text)) is not None:
            return _subtask(sub["rest"], sub["ref"])
    if (done := _ALL_X_DONE.match(text)) is not None:
        return _batch("complete", {"tag": done["tag"].lower()})
    if (done := _BATCH_DONE.match(text)) is not None:
        return _batch("complete", _filter(done["rest"], now))
    if (reopen := _BATCH_REOPEN.match(text)) is not None:
        return _batch("reopen", {**_filter(reopen["rest"], now), "status": "completed"})
    if (move := _BATCH_MOVE.match(text)) is not None:
        return _move(move["rest"], move["to"], now)
    if (gone := _BATCH_DELETE.match(text)) is not None:
        chosen = _filter(gone["rest"], now)
        return ToolCommand("delete_tasks", {"filter": chosen})
    return None


def add_to_list(rest: str) -> ToolCommand | None:
    """ "milk to groceries": add "Milk" to the list groceries if the user has one, else "Milk to
    groceries"; "slides to my work list" is surely a list."""
    found = _TO_LIST.match(rest.strip())
    if found is None or not _is_list_name(found["name"]) or take_date(found["name"])[0] is not None:
        return None
    with_list = add_arguments(found["rest"])
    if with_list is None:
        return None
    name = found["name"].strip()
    if found["marked"]:
        return ToolCommand("add_task", {**with_list, "list": name})
    plain = add_arguments(rest)
    if plain is None:
        return None
    return ToolCommand("add_task", plain, maybe_list=(name, with_list))


def _is_list_name(name: str | None) -> bool:
    return bool(name) and name.strip().lower() not in _NOT_LISTS  # type: ignore[union-attr]


def _subtask(rest: str, ref_text: str) -> Command:
    from agent.offline.parser import parse_ref

    args = add_arguments(rest)
    ref = parse_ref(ref_text)
    if args is None or ref is None:
        return Reply('Which subtask, under which task? For example "add a subtask pack passport to trip".')
    return ToolCommand("add_task", args, ref=ref, ref_argument="parent_id")


def _filter(rest: str, now: datetime) -> dict[str, Any]:
    """The filter of "tagged home", "in my work list", "overdue", "due today" ..."""
    rest = re.sub(r"^\s*(?:that\s+(?:are|is)|which\s+(?:are|is))\s+", " ", rest, flags=_I)
    chosen: dict[str, Any] = {}
    if (named := _IN_LIST.search(rest)) is not None and _is_list_name(named["name"]):
        chosen["list"] = named["name"].strip()
        rest = rest[: named.start()] + rest[named.end() :]
    elif (bare := _IN_BARE.match(rest)) is not None and _is_list_name(bare["name"]):
        chosen["list"] = bare["name"].strip()
        rest = ""
    words = rest.strip()
    if words:
        found = list_arguments(f"show {words}", now)
        chosen |= {k: v for k, v in found.items() if k not in ("limit", "search")}
        if chosen.get("status") == "pending":
            del chosen["status"]  # the filter's default
    return chosen


def _batch(action: str, chosen: dict[str, Any]) -> Command:
    if not {k for k in chosen if k != "status"}:
        return Reply(
            f'Which tasks should I {action}? Say for example "{action} everything tagged home" or '
            f'"{action} all tasks in my work list".'
        )
    return ToolCommand("change_tasks", {"action": action, "filter": chosen})


def _move(rest: str, to: str, now: datetime) -> Command:
    chosen = _filter(rest, now)
    when, left = take_date(to)
    if when is not None and not left.strip():
        return _with(_batch("reschedule", chosen), due=when)
    target = re.sub(r"^(?:the|my)\s+|\s+list$", "", to.strip(), flags=_I)
    return _with(_batch("move", chosen), list=target)


def _with(command: Command, **arguments: Any) -> Command:
    if isinstance(command, ToolCommand):
        return ToolCommand(command.tool, {**command.arguments, **arguments})
    return command


__all__ = ["TaskRef", "add_to_list", "parse_depth"]
