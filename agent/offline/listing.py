"""Turn "what's due this week?", "show overdue", "search milk" into ``list_tasks`` arguments.

Periods such as "today" or "this week" become ISO 8601 bounds in the user's time zone, computed
from the reference time, because the server should not have to guess what "this week" means.
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from typing import Any, Final

from agent.offline.phrases import PRIORITY_WORDS

LIST_START: Final = re.compile(
    r"^(?:show|list|display|view|see|get|give|what|what's|whats|which|any|anything|do i have"
    r"|how many|my|tasks?|todos?|to-dos?|overdue|completed|finished|pending|open|everything"
    r"|all|search|find|look|high|medium|low|urgent|important|tagged)\b",
    re.IGNORECASE,
)
_SEARCH: Final = re.compile(
    r"^(?:search|find|look)\s+(?:for\s+)?(?:(?:my\s+)?tasks?\s+)?"
    r"(?:(?:about|with|containing|matching|named|called)\s+)?(?P<q>.+)$",
    re.IGNORECASE,
)
_BOUND: Final = re.compile(r"\bdue\s+(?P<side>before|after|by)\s+(?P<when>.+)$", re.IGNORECASE)
_TAG: Final = re.compile(
    r"\b(?:tagged|with (?:the )?tag|tag)\s+#?(?P<a>[a-z][\w-]*)|(?<![\w#])#(?P<b>[a-z][\w-]*)",
    re.IGNORECASE,
)
_PRIORITY: Final = re.compile(
    r"\b(?:(?P<a>high|medium|low)[- ]priority|priority\s+(?P<b>high|medium|low)"
    r"|(?P<c>urgent|important))\b|!(?P<d>high|medium|low)\b",
    re.IGNORECASE,
)
_LIMIT: Final = re.compile(r"\b(?:top|first|next|last)\s+(?P<n>\d{1,3})\b", re.IGNORECASE)


def _day_start(now: datetime, days: int = 0) -> datetime:
    day = now.date() + timedelta(days=days)
    return datetime.combine(day, time.min, tzinfo=now.tzinfo)


def period_bounds(text: str, now: datetime) -> tuple[datetime, datetime] | None:
    """Start and end of "today", "tomorrow", "this week", "next week", "this month"."""
    low = text.lower()
    if re.search(r"\b(?:today|tonight)\b", low):
        return _day_start(now), _day_start(now, 1)
    if re.search(r"\btomorrow\b", low):
        return _day_start(now, 1), _day_start(now, 2)
    week_start = _day_start(now, -now.weekday())
    if re.search(r"\bnext week\b", low):
        return week_start + timedelta(days=7), week_start + timedelta(days=14)
    if re.search(r"\b(?:this|the) week\b|\bweek\b", low):
        return week_start, week_start + timedelta(days=7)
    if re.search(r"\bthis month\b", low):
        start = _day_start(now, 1 - now.day)
        end = (start + timedelta(days=32)).replace(day=1)
        return start, end
    return None


def _status(low: str) -> str:
    if re.search(r"\b(?:everything|all|every task|any status)\b", low):
        return "all"
    if re.search(r"\b(?:completed|finished|done)\b", low) and not re.search(r"\bnot done\b", low):
        return "completed"
    return "pending"


def list_arguments(text: str, now: datetime) -> dict[str, Any]:
    """``list_tasks`` arguments for a listing request; only the filters that were asked for."""
    search = _SEARCH.match(text)
    if search is not None:
        return {"status": "all", "search": search["q"].strip(" \"'")}
    low = text.lower()
    args: dict[str, Any] = {"status": _status(low)}
    bound = _BOUND.search(text)
    if bound is not None:
        key = "due_after" if bound["side"].lower() == "after" else "due_before"
        args[key] = bound["when"].strip()
        text = text[: bound.start()]
    elif (period := period_bounds(text, now)) is not None:
        args["due_after"], args["due_before"] = (d.isoformat() for d in period)
    if re.search(r"\b(?:overdue|late|past due)\b", low):
        args["overdue"] = True
    if (tag := _TAG.search(text)) is not None:
        args["tag"] = (tag["a"] or tag["b"]).lower()
    if (prio := _PRIORITY.search(text)) is not None:
        word = next(g for g in prio.groups() if g is not None).lower()
        args["priority"] = PRIORITY_WORDS[word]
    if (limit := _LIMIT.search(text)) is not None:
        args["limit"] = int(limit["n"])
    return args
