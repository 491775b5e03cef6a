"""Recurrence phrases -> RFC 5545 RRULEs, and the next occurrence of a rule.

>>> to_rrule("every 2 weeks on monday and thursday")
'FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TH'
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Final

from dateutil.rrule import rrulestr

from tasks.clock import as_utc, zone
from tasks.errors import InvalidInput

_DAYS: Final = {
    "mon": "MO", "tue": "TU", "wed": "WE", "thu": "TH", "fri": "FR", "sat": "SA", "sun": "SU",
}  # fmt: skip
_UNITS: Final = {"day": "DAILY", "week": "WEEKLY", "month": "MONTHLY", "year": "YEARLY"}
_SIMPLE: Final = {
    "daily": "FREQ=DAILY", "every day": "FREQ=DAILY", "each day": "FREQ=DAILY",
    "weekly": "FREQ=WEEKLY", "every week": "FREQ=WEEKLY",
    "monthly": "FREQ=MONTHLY", "every month": "FREQ=MONTHLY",
    "yearly": "FREQ=YEARLY", "annually": "FREQ=YEARLY", "every year": "FREQ=YEARLY",
    "every weekday": "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR",
    "weekdays": "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR",
    "every weekend": "FREQ=WEEKLY;BYDAY=SA,SU",
    "biweekly": "FREQ=WEEKLY;INTERVAL=2", "fortnightly": "FREQ=WEEKLY;INTERVAL=2",
    "every other week": "FREQ=WEEKLY;INTERVAL=2", "every other day": "FREQ=DAILY;INTERVAL=2",
    "hourly": "FREQ=HOURLY", "every hour": "FREQ=HOURLY",
}  # fmt: skip
_ORDINALS: Final = {
    "first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3, "fourth": 4, "4th": 4,
    "last": -1, "second last": -2,
}  # fmt: skip
_HELP: Final = (
    "try 'daily', 'every weekday', 'every 3 days', 'every 2 weeks on monday and thursday', "
    "'monthly on the last friday', 'monthly on the 15th', 'yearly', or an RRULE like "
    "'FREQ=WEEKLY;BYDAY=MO'"
)


def _day_codes(text: str) -> list[str]:
    codes: list[str] = []
    for word in re.findall(r"[a-z]+", text):
        code = _DAYS.get(word[:3])
        if code and word.startswith(word[:3]) and code not in codes and len(word) >= 3:
            codes.append(code)
    return codes


def _base_rule(phrase: str) -> str | None:
    if phrase in _SIMPLE:
        return _SIMPLE[phrase]
    m = re.fullmatch(r"(?:every|each)\s+(\d+|other)\s+(day|week|month|year)s?(?:\s+on\s+(.+))?", phrase)
    if m:
        interval = 2 if m.group(1) == "other" else int(m.group(1))
        rule = (
            f"FREQ={_UNITS[m.group(2)]};INTERVAL={interval}"
            if interval != 1
            else f"FREQ={_UNITS[m.group(2)]}"
        )
        return _with_on(rule, m.group(2), m.group(3))
    m = re.fullmatch(r"(daily|weekly|monthly|yearly|every (?:day|week|month|year))\s+on\s+(.+)", phrase)
    if m:
        unit = {"daily": "day", "weekly": "week", "monthly": "month", "yearly": "year"}.get(
            m.group(1), m.group(1).split()[-1]
        )
        return _with_on(f"FREQ={_UNITS[unit]}", unit, m.group(2))
    m = re.fullmatch(r"(?:every|each|on)\s+(.+)", phrase)
    if m and (codes := _day_codes(m.group(1))) and not re.search(r"\d", m.group(1)):
        return "FREQ=WEEKLY;BYDAY=" + ",".join(codes)
    return None


def _with_on(rule: str, unit: str, on: str | None) -> str | None:
    if not on:
        return rule
    on = on.removeprefix("the ").strip()
    if unit == "week":
        codes = _day_codes(on)
        return f"{rule};BYDAY={','.join(codes)}" if codes else None
    if unit == "month":
        m = re.fullmatch(r"(first|1st|second|2nd|third|3rd|fourth|4th|last|second last)\s+([a-z]+)", on)
        if m and (codes := _day_codes(m.group(2))):
            return f"{rule};BYDAY={_ORDINALS[m.group(1)]}{codes[0]}"
        if on in ("last day", "last day of the month"):
            return f"{rule};BYMONTHDAY=-1"
        m = re.fullmatch(r"(\d{1,2})(?:st|nd|rd|th)?", on)
        if m and 1 <= int(m.group(1)) <= 31:
            return f"{rule};BYMONTHDAY={int(m.group(1))}"
    return None


def to_rrule(phrase: str) -> str:
    """Turn a recurrence phrase or an RRULE into a validated RRULE (without 'RRULE:')."""
    text = " ".join(phrase.strip().lower().split())
    if not text:
        raise InvalidInput("recurrence", f"The recurrence is empty; {_HELP}.")
    raw = text.upper().removeprefix("RRULE:")
    if raw.startswith("FREQ="):
        raw = re.sub(r"(UNTIL=\d{8}(?:T\d{6})?)(?=;|$)", lambda m: _until_utc(m.group(1)), raw)
        validate_rrule(raw)
        return raw
    suffix = ""
    if m := re.search(r"\s+(?:for\s+)?(\d+)\s+times$", text):
        suffix, text = f";COUNT={m.group(1)}", text[: m.start()]
    elif m := re.search(r"\s+until\s+(\d{4}-\d{2}-\d{2})$", text):
        suffix, text = f";UNTIL={m.group(1).replace('-', '')}T235959Z", text[: m.start()]
    rule = _base_rule(text.removeprefix("repeat ").strip())
    if rule is None:
        raise InvalidInput("recurrence", f"Could not understand '{phrase}' as a repeat rule; {_HELP}.")
    validate_rrule(rule + suffix)
    return rule + suffix


def _until_utc(until: str) -> str:
    return until + ("Z" if "T" in until.split("=", 1)[1] else "T235959Z")


def validate_rrule(rule: str) -> None:
    try:
        rrulestr(rule, dtstart=datetime(2026, 1, 1, tzinfo=UTC))
    except (ValueError, TypeError) as exc:
        raise InvalidInput("recurrence", f"'{rule}' is not a valid RRULE ({exc}); {_HELP}.") from exc


def next_occurrence(
    rule: str, *, anchor: datetime, after: datetime, occurrence: int, tz: str = "UTC"
) -> datetime | None:
    """The first time of ``rule`` strictly after ``after``, or None when the rule has ended.

    ``anchor`` is the series' first time (RRULE's DTSTART, which also fixes the time of day);
    ``occurrence`` is how many occurrences the series already had, so COUNT is respected even
    when occurrences are computed from completion times. Days and times are read in zone
    ``tz`` so "every monday 9:00" stays Monday 9:00 local across DST changes.
    """
    parts = dict(p.split("=", 1) for p in rule.split(";") if "=" in p)
    if "COUNT" in parts and occurrence >= int(parts["COUNT"]):
        return None
    unbounded = ";".join(f"{k}={v}" for k, v in parts.items() if k != "COUNT")
    local = zone(tz)
    rrule = rrulestr(unbounded, dtstart=as_utc(anchor).astimezone(local))
    found = rrule.after(as_utc(after).astimezone(local), inc=False)
    if found is None:
        return None
    return as_utc(found)


def describe(rule: str | None) -> str | None:
    """A short human reading of an RRULE ('every 2 weeks on MO,TH'), for replies and lists."""
    if not rule:
        return None
    parts = dict(p.split("=", 1) for p in rule.split(";") if "=" in p)
    unit = {"DAILY": "day", "WEEKLY": "week", "MONTHLY": "month", "YEARLY": "year", "HOURLY": "hour"}
    interval = int(parts.get("INTERVAL", "1"))
    base = (
        f"every {unit.get(parts.get('FREQ', ''), '?')}"
        if interval == 1
        else (f"every {interval} {unit.get(parts.get('FREQ', ''), '?')}s")
    )
    if "BYDAY" in parts:
        base += f" on {parts['BYDAY']}"
    if "BYMONTHDAY" in parts:
        base += f" on day {parts['BYMONTHDAY']}"
    if "COUNT" in parts:
        base += f", {parts['COUNT']} times"
    if "UNTIL" in parts:
        base += f", until {parts['UNTIL'][:8]}"
    return base
