"""Parse the rest of "add buy milk tomorrow 5pm #groceries high priority" into add_task arguments."""

from __future__ import annotations

import re
from typing import Any, Final

from agent.offline.phrases import (
    take_date,
    take_priority,
    take_recurrence,
    take_reminder,
    take_tags,
    tidy,
)

_DESCRIPTION: Final = re.compile(
    r"(?:\bwith\s+(?:an?\s+|the\s+)?(?:description|notes?|details)\s*:?"
    r"|\b(?:description|notes?|details)\s*:)\s*(?P<d>.+)$",
    re.IGNORECASE,
)
_QUOTED: Final = re.compile(r"[\"“](?P<t>[^\"”]+)[\"”]")
_LEADING_FLUFF: Final = re.compile(
    r"^(?:(?:a|an)\s+)?(?:new\s+)?(?:task|todo|to-do|item|reminder)\b\s*(?:to\b|:|called\b|named\b)?",
    re.IGNORECASE,
)
_TRAILING_FLUFF: Final = re.compile(
    r"\s*\b(?:to|on|in)\s+(?:my\s+|the\s+)?(?:todo\s+|to-do\s+|task\s+)?(?:list|tasks)\b",
    re.IGNORECASE,
)


def capitalized(title: str) -> str:
    return title[:1].upper() + title[1:]


_BARE_TIME: Final = re.compile(r"^(?:\d{1,2}(?::\d{2})?\s*(?:am|pm)|\d{1,2}:\d{2}|noon)$", re.I)
_WEEKDAY: Final = re.compile(r"\b(?:mon|tues|wednes|thurs|fri|satur|sun)day\b", re.I)


def _on_first_day(due: str | None, recurrence: str | None) -> str | None:
    """ "every monday at 9am": the first one is due "monday at 9am", not today at 9am."""
    day = _WEEKDAY.search(recurrence or "")
    if due is None or day is None or not _BARE_TIME.match(due):
        return due
    return f"{day[0].lower()} at {due}"


def add_arguments(text: str, *, remind_at_due: bool = False) -> dict[str, Any] | None:
    """``add_task`` arguments, or None when no title is left after taking the clauses out.

    ``remind_at_due`` is for "remind me to ...": a reminder when the task falls due.
    """
    args: dict[str, Any] = {}
    description = _DESCRIPTION.search(text)
    if description is not None:
        args["description"] = description["d"].strip()
        text = text[: description.start()]
    quoted = _QUOTED.search(text)
    title_hint = quoted["t"].strip() if quoted else None
    if quoted is not None:
        text = f"{text[: quoted.start()]} {text[quoted.end() :]}"
    minutes, text = take_reminder(text)
    recurrence, text = take_recurrence(text)
    priority, text = take_priority(text)
    tags, text = take_tags(text)
    due, text = take_date(text)
    title = title_hint or tidy(_TRAILING_FLUFF.sub("", _LEADING_FLUFF.sub("", tidy(text))))
    if not title:
        return None
    due = _on_first_day(due, recurrence)
    if minutes is None and remind_at_due and due is not None:
        minutes = 0
    found = {
        "due": due,
        "priority": priority,
        "tags": tags or None,
        "recurrence": recurrence,
        "remind_before_minutes": minutes,
    }
    return {"title": capitalized(title), **args, **{k: v for k, v in found.items() if v is not None}}
