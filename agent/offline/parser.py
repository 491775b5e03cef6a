"""Text → ``Command``: the offline model's understanding of one user message. Pure and total.

>>> parse_command("mark 3 as done", now=datetime(2026, 11, 26, tzinfo=UTC))
ToolCommand(tool='complete_task', arguments={}, ref=TaskRef(id=3, fragment=None))
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Final

from agent.offline.adding import add_arguments, capitalized
from agent.offline.batches import add_to_list, parse_depth
from agent.offline.commands import Answer, Choice, Command, Reply, TaskRef, ToolCommand
from agent.offline.formatting import HELP_TEXT, not_understood
from agent.offline.listing import LIST_START, list_arguments
from agent.offline.phrases import DURATION, PRIORITY_WORDS, minutes_of, take_date

_I = re.IGNORECASE
_ID: Final = re.compile(r"^(?:task\s+|number\s+)?#?(?P<id>\d+)$", _I)
_GREETING: Final = re.compile(
    r"^(?:hi|hello|hey|hiya|yo|good (?:morning|afternoon|evening)|help|start|menu|commands|\?*"
    r"|what can you do|how do(?:es)? (?:this|you|i use this) work)(?: there)?$",
    _I,
)
_THANKS: Final = re.compile(r"^(?:thanks|thank you|thx|cheers|great|cool|nice)\b", _I)
_YES: Final = re.compile(
    r"^(?:yes|y|yeah|yep|yup|sure|ok|okay|confirm|confirmed|do it|go ahead|delete it)"
    r"(?:,? please)?$",
    _I,
)
_NO: Final = re.compile(r"^(?:no|n|nope|nah|cancel|don'?t|do not|stop|never ?mind|keep it|abort)$", _I)
_FRAGMENT_FLUFF: Final = re.compile(r"^(?:(?:the|my|a)\s+)?(?:(?:task|todo|item)\s+)?", _I)
_PRIO: Final = "high|medium|normal|low|none|urgent|important"

Builder = Callable[[re.Match[str]], Command | None]


def parse_ref(text: str) -> TaskRef | None:
    """A task named as "3", "#3", "task 3" or by a title fragment ("the report")."""
    text = text.strip().strip("\"'“”").strip()
    if (match := _ID.match(text)) is not None:
        return TaskRef(id=int(match["id"]))
    fragment = re.sub(r"\s+task$", "", _FRAGMENT_FLUFF.sub("", text), flags=_I).strip("\"'“” ")
    return TaskRef(fragment=fragment) if fragment else None


def _on_task(tool: str, **fixed: object) -> Builder:
    def build(match: re.Match[str]) -> Command | None:
        ref = parse_ref(match["ref"])
        return None if ref is None else ToolCommand(tool, dict(fixed), ref)  # type: ignore[arg-type]

    return build


def _update(field: str, convert: Callable[[str], object] = str.strip) -> Builder:
    def build(match: re.Match[str]) -> Command | None:
        ref = parse_ref(match["ref"])
        value = convert(match["v"])
        return None if ref is None or value in ("", None) else ToolCommand("update_task", {field: value}, ref)

    return build


def _tags(text: str) -> list[str]:
    return [t.strip("# ").lower() for t in re.split(r"\s*,\s*|\s+and\s+|\s+", text) if t.strip("# ")]


def _due(text: str) -> str:
    phrase, rest = take_date(text)
    return text.strip() if phrase is None or rest else phrase


_BEFORE_DUE: Final = re.compile(
    rf"^(?P<ref>.+?)\s+{DURATION}\s+(?:before|ahead|early)(?:\s+(?:it'?s?\s+|it is\s+)?due)?$", _I
)


def _remind(match: re.Match[str]) -> Command | None:
    if (before := _BEFORE_DUE.match(match["rest"])) is not None:
        return _remind_before(before)
    at, rest = take_date(match["rest"])
    ref = parse_ref(rest)
    if ref is None:
        return None
    if at is None:
        return Reply(
            'When should I remind you? Try "remind me about 3 at 9am tomorrow" or '
            '"remind me 30 minutes before 3".'
        )
    return ToolCommand("set_reminder", {"at": at}, ref)


def _remind_before(match: re.Match[str]) -> Command | None:
    ref = parse_ref(match["ref"])
    minutes = minutes_of(match["n"], match["unit"])
    return None if ref is None else ToolCommand("set_reminder", {"minutes_before_due": minutes}, ref)


def _add(remind_at_due: bool = False) -> Builder:
    def build(match: re.Match[str]) -> Command | None:
        if not remind_at_due and (to_list := add_to_list(match["rest"])) is not None:
            return to_list
        args = add_arguments(match["rest"], remind_at_due=remind_at_due)
        return (
            Reply('What should I add? For example "add buy milk tomorrow 5pm".')
            if args is None
            else ToolCommand("add_task", args)
        )

    return build


_RULES: Final[list[tuple[str, Builder]]] = [
    (
        r"(?:cancel|remove|delete|clear|turn off|stop|disable|drop)\s+(?:the\s+|my\s+|any\s+)?"
        r"reminders?\s+(?:for|on|of|about|from)\s+(?P<ref>.+)",
        _on_task("set_reminder", cancel=True),
    ),
    (
        r"(?:don'?t|do not|no longer)\s+remind me\s+(?:about|of)\s+(?P<ref>.+)",
        _on_task("set_reminder", cancel=True),
    ),
    (rf"remind me\s+{DURATION}\s+(?:before|ahead of)\s+(?P<ref>.+?)(?:\s+is due)?", _remind_before),
    (r"(?:remind me|set (?:a |the )?reminder)\s+(?:about|of|for|on)\s+(?P<rest>.+)", _remind),
    (r"remind me to\s+(?P<rest>.+)", _add(remind_at_due=True)),
    (
        r"(?:mark|set|flag)\s+(?P<ref>.+?)\s+(?:as\s+)?"
        r"(?:not done|undone|incomplete|not completed|not complete|unfinished|open|pending|to ?do)",
        _on_task("update_task", completed=False),
    ),
    (r"(?:reopen|re-open|uncomplete|unmark|undo)\s+(?P<ref>.+)", _on_task("update_task", completed=False)),
    (
        r"(?:mark|set|flag)\s+(?P<ref>.+?)\s+(?:as\s+)?(?:done|complete|completed|finished)",
        _on_task("complete_task"),
    ),
    (
        r"(?:i'?m\s+|i am\s+|i'?ve\s+|i have\s+)?(?:done|finished)\s+with\s+(?P<ref>.+)",
        _on_task("complete_task"),
    ),
    (r"i(?:'ve| have)?\s+(?:finished|completed|done|did)\s+(?P<ref>.+)", _on_task("complete_task")),
    (r"(?:complete|finish|check off|tick off|close|done)\s+(?P<ref>.+)", _on_task("complete_task")),
    (
        r"(?!(?:what|which|whats|what's|anything|everything|all)\b)(?P<ref>.+?)\s+is\s+(?:done|finished|complete|completed)",
        _on_task("complete_task"),
    ),
    (r"(?:delete|remove|drop|trash|erase|get rid of)\s+(?P<ref>.+)", _on_task("delete_task")),
    (
        r"(?:rename|retitle)\s+(?P<ref>.+?)\s+(?:to|as)\s+(?P<v>.+)",
        _update("title", lambda v: capitalized(v.strip(" \"'“”"))),
    ),
    (
        r"(?:change|set|update)\s+(?:the\s+)?(?:title|name)\s+(?:of|for|on)\s+(?P<ref>.+?)\s+to\s+(?P<v>.+)",
        _update("title", lambda v: capitalized(v.strip(" \"'“”"))),
    ),
    (
        r"(?:move|reschedule|postpone|push|shift|defer)\s+(?P<ref>.+)\s+(?:to|until|till|for)\s+(?P<v>.+)",
        _update("due", _due),
    ),
    (
        r"(?:change|set|update)\s+(?:the\s+)?(?:due(?: date| time)?|deadline)\s+(?:of|for|on)\s+"
        r"(?P<ref>.+?)\s+to\s+(?P<v>.+)",
        _update("due", _due),
    ),
    (
        rf"(?:change|set|update|make)\s+(?:the\s+)?priority\s+(?:of|for|on)\s+(?P<ref>.+?)\s+(?:to\s+)?(?P<v>{_PRIO})",
        _update("priority", lambda v: PRIORITY_WORDS[v.lower()]),
    ),
    (
        rf"(?:change|set|update)\s+(?P<ref>.+?)(?:'s)?\s+priority\s+to\s+(?P<v>{_PRIO})",
        _update("priority", lambda v: PRIORITY_WORDS[v.lower()]),
    ),
    (
        rf"make\s+(?P<ref>.+?)\s+(?P<v>{_PRIO})(?:[- ]priority)?",
        _update("priority", lambda v: PRIORITY_WORDS[v.lower()]),
    ),
    (
        r"(?:set|change|update|add)\s+(?:the\s+|a\s+)?(?:description|notes?|details)\s+(?:of|for|on|to)\s+(?P<ref>.+?)\s*(?:\bto\b|:)\s*(?P<v>.+)",
        _update("description"),
    ),
    (
        r"(?:set|change|update)\s+(?:the\s+)?tags\s+(?:of|for|on)\s+(?P<ref>.+?)\s+to\s+(?P<v>.+)",
        _update("tags", _tags),
    ),
    (
        r"(?:make|set)\s+(?P<ref>.+?)\s+(?:to\s+)?(?:repeat(?:ing)?|recur(?:ring)?)\s+(?P<v>.+)",
        _update("recurrence", lambda v: v.strip().lower()),
    ),
    (
        r"(?:please\s+)?(?:add|create|new|todo|to-do|remember to|i need to|i have to|i must|i should"
        r"|don'?t forget to)\b\s*:?\s*(?P<rest>.*)",
        _add(),
    ),
]
_COMPILED: Final = [(re.compile(rf"^{pattern}$", _I), build) for pattern, build in _RULES]


def normalize(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"^(?:oops|whoops|oh|ah|hmm|sorry|wait|actually)\b[,.!]*\s+", "", text, flags=_I)
    text = re.sub(r"^(?:please|pls|can you|could you|would you)\s+", "", text, flags=_I)
    return re.sub(r"(?:,?\s+please)?[\s?.!]+$", "", text, flags=_I).strip()


def parse_command(text: str, *, now: datetime) -> Command:
    """What one user message asks for. ``now`` is the reference time in the user's zone."""
    text = normalize(text)
    if _GREETING.match(text):
        return Reply(HELP_TEXT)
    if _THANKS.match(text):
        return Reply("You're welcome!")
    if _YES.match(text) or _NO.match(text):
        return Answer(confirmed=_YES.match(text) is not None)
    if (match := _ID.match(text)) is not None:
        return Choice(task_id=int(match["id"]))
    if (depth := parse_depth(text, now)) is not None:
        return depth
    for pattern, build in _COMPILED:
        if (match := pattern.match(text)) is not None and (command := build(match)) is not None:
            return command
    if LIST_START.match(text):
        return ToolCommand("list_tasks", list_arguments(text, now))
    return Reply(not_understood(text))
