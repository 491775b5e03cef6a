"""Regular expressions that pull one kind of phrase (date, priority, tags, ...) out of a text.

Each ``take_*`` function returns what it found and the text with that phrase removed, so the
add-task parser can peel clauses off one by one and keep the rest as the title.
"""

from __future__ import annotations

import re
from typing import Final

_DAY: Final = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
_MONTH: Final = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_NUMBER: Final = r"(?:\d+|an?|one|two|three|four|five|six|ten|fifteen|twenty|thirty)"
_DATE_TOKEN: Final = re.compile(
    r"\b(?:(?:due|by|on|at|before|for|from)\s+)?(?:"
    r"today|tonight|tomorrow|tmrw|day after tomorrow|noon|midnight|morning|afternoon|evening"
    rf"|(?:next|this|coming)\s+(?:{_DAY}|week(?:end)?|month|year)|{_DAY}"
    rf"|in\s+{_NUMBER}\s+(?:minutes?|mins?|hours?|hrs?|days?|weeks?|months?)"
    r"|end of (?:the\s+)?(?:day|week|month)"
    r"|\d{4}-\d{2}-\d{2}(?:[t ]\d{1,2}:\d{2})?|\d{1,2}/\d{1,2}(?:/\d{2,4})?"
    rf"|{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?\b|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH}"
    r"|\d{1,2}(?::\d{2})?\s*(?:am|pm)|\d{1,2}:\d{2}"
    r")(?![\w:])",
    re.IGNORECASE,
)
_DATE_GLUE: Final = re.compile(r"^(?:\s|,|\bat\b|\bon\b|\bthe\b)*$", re.IGNORECASE)
_DATE_LEAD: Final = re.compile(r"^(?:(?:due|by|on|at|before|for|from)\s+)+", re.IGNORECASE)

_UNIT_MINUTES: Final = {"m": 1, "h": 60, "d": 1440, "w": 10080}
_WORD_NUMBERS: Final = {
    **{"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5},
    **{"six": 6, "ten": 10, "fifteen": 15, "twenty": 20, "thirty": 30},
}
DURATION: Final = rf"(?P<n>{_NUMBER}|half an?)\s*(?P<unit>minutes?|mins?|m|hours?|hrs?|h|days?|d|weeks?|w)\b"
_REMINDER: Final = re.compile(
    r"(?:,\s*|\b(?:and|with)\s+)?(?:(?:a|an)\s+)?\b(?:remind(?:er)?(?:\s+me)?|alert(?:\s+me)?)"
    rf"\s+{DURATION}\s+(?:before|early|earlier|ahead)(?:\s+(?:it'?s?\s+|it is\s+)?due)?",
    re.IGNORECASE,
)

_RDAYS: Final = rf"{_DAY}s?(?:(?:\s*,\s*(?:and\s+)?|\s+and\s+){_DAY}s?)*"
_ORDINAL: Final = r"(?:first|second|third|fourth|last|\d{1,2}(?:st|nd|rd|th)?)"
_RECURRENCE: Final = re.compile(
    r"(?:,\s*|\b(?:and|that)\s+)?(?:\b(?:repeat(?:s|ing)?|recurring|recurs)\s+)?\b(?P<rule>"
    r"(?:every\s+(?:other\s+)?(?:\d+\s+)?"
    rf"(?:{_RDAYS}|weekdays?|weekend days?|days?|weeks?|months?|years?)"
    r"|daily|weekly|monthly|yearly|annually|fortnightly|on weekdays)"
    rf"(?:\s+on\s+(?:the\s+)?(?:{_ORDINAL}(?:\s+(?:{_RDAYS}|weekdays?|day))?|{_RDAYS}|weekdays?)"
    r"(?:\s+of the month)?)?"
    r")\b",
    re.IGNORECASE,
)

PRIORITY_WORDS: Final = {
    **{"high": "high", "medium": "medium", "normal": "medium", "low": "low", "none": "none"},
    **{"urgent": "high", "important": "high", "h": "high", "m": "medium", "l": "low"},
    **{"p1": "high", "p2": "medium", "p3": "low"},
}
_PRIORITY: Final = re.compile(
    r"(?:,\s*|\b(?:and|with)\s+)?(?:(?:a|an)\s+)?(?:"
    r"\b(?P<a>high|medium|normal|low)[- ]priority\b|\bpriority\s*:?\s*(?P<b>high|medium|low|none)\b"
    r"|(?<![\w!])!(?P<c>high|medium|low|h|m|l)\b|\b(?P<d>p[123])\b|\b(?P<e>urgent|important)\b:?"
    r")",
    re.IGNORECASE,
)
_TAG_WORD: Final = r"#?[a-z][\w-]*"
_TAG_CLAUSE: Final = re.compile(
    r"(?:,\s*|\band\s+)?\b(?:tag(?:ged)?|tags|labell?ed)(?:\s+it)?(?:\s+(?:with|as))?\s*:?\s+"
    rf"(?P<tags>{_TAG_WORD}(?:(?:\s*,\s*(?:and\s+)?|\s+and\s+){_TAG_WORD})*)",
    re.IGNORECASE,
)
_HASHTAG: Final = re.compile(r"(?<![\w#])#(?P<tag>[a-z][\w-]*)", re.IGNORECASE)


def tidy(text: str) -> str:
    """Collapse whitespace and trim connecting words and punctuation at both ends."""
    text = re.sub(r"\s+", " ", text).strip()
    edge = r"(?:and|with|,|;|:|-|—|\.)"
    text = re.sub(rf"^(?:{edge}\s*)+|(?:\s*{edge})+$", "", text, flags=re.IGNORECASE)
    return text.strip()


def _cut(text: str, match: re.Match[str]) -> str:
    return tidy(f"{text[: match.start()]} {text[match.end() :]}")


def minutes_of(n: str, unit: str) -> int:
    """Minutes in a duration such as ("30", "minutes") or ("an", "hour")."""
    if n.lower().startswith("half"):
        return _UNIT_MINUTES[unit[0].lower()] // 2
    count = int(n) if n.isdigit() else _WORD_NUMBERS.get(n.lower(), 1)
    return count * _UNIT_MINUTES[unit[0].lower()]


def take_date(text: str) -> tuple[str | None, str]:
    """The first run of date/time words (e.g. "tomorrow at 5pm") and the text without it."""
    matches = list(_DATE_TOKEN.finditer(text))
    if not matches:
        return None, text
    start, end = matches[0].start(), matches[0].end()
    for nxt in matches[1:]:
        if not _DATE_GLUE.match(text[end : nxt.start()]):
            break
        end = nxt.end()
    phrase = _DATE_LEAD.sub("", text[start:end]).strip()
    return phrase, tidy(f"{text[:start]} {text[end:]}")


def take_reminder(text: str) -> tuple[int | None, str]:
    match = _REMINDER.search(text)
    if match is None:
        return None, text
    return minutes_of(match["n"], match["unit"]), _cut(text, match)


def take_recurrence(text: str) -> tuple[str | None, str]:
    match = _RECURRENCE.search(text)
    if match is None:
        return None, text
    return re.sub(r"\s+", " ", match["rule"].lower()).strip(), _cut(text, match)


def take_priority(text: str) -> tuple[str | None, str]:
    match = _PRIORITY.search(text)
    if match is None:
        return None, text
    word = next(g for g in match.groups() if g is not None).lower()
    return PRIORITY_WORDS[word], _cut(text, match)


def take_tags(text: str) -> tuple[list[str], str]:
    """Tags from "#groceries", "tag it work", "tags: a, b"; lower-case, in order, no repeats."""
    tags: list[str] = []
    match = _TAG_CLAUSE.search(text)
    if match is not None:
        tags += [t.lstrip("#") for t in re.split(r"\s*,\s*(?:and\s+)?|\s+and\s+", match["tags"])]
        text = _cut(text, match)
    tags += [m["tag"] for m in _HASHTAG.finditer(text)]
    text = tidy(_HASHTAG.sub("", text))
    return list(dict.fromkeys(t.lower() for t in tags)), text
