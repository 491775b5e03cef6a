"""Recurrence phrases -> RFC 5545 RRULEs, and the next occurrence of a rule.

>>> to_rrule("every 2 weeks on monday and thursday")
'FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TH'
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Final

from dateutil.parser import isoparse
from dateutil.rrule import rrule, rrulestr

from tasks.clock import as_utc, zone
from tasks.errors import InvalidInput

_DAYS: Final = {
    "mon": "MO", "tue": "TU", "wed": "WE", "thu": "TH", "fri": "FR", "sat": "SA", "sun": "SU",
}  # fmt: skip
log = logging.getLogger(__name__)

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


#: The frequencies a task may repeat at; anything faster than hourly is noise for a to-do list
#: and would cost a reminder job every few seconds.
_FREQUENCIES: Final = ("HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY")
#: Frequencies with a short period take only filters that some period always meets (weekdays,
#: hours, months): days of the month or year belong in MONTHLY and YEARLY rules.
_FINE: Final = ("HOURLY", "DAILY", "WEEKLY")
_FINE_PARTS: Final = frozenset(
    {"FREQ", "INTERVAL", "COUNT", "UNTIL", "WKST", "BYDAY", "BYHOUR", "BYMINUTE", "BYMONTH"}
)
_MAX_INTERVAL: Final = 1000
_MAX_COUNT: Final = 100_000
_MAX_RULE_LENGTH: Final = 500
#: One period of each frequency, for horizons and for moving a series' start forward.
_PERIOD: Final = {"HOURLY": timedelta(hours=1), "DAILY": timedelta(days=1), "WEEKLY": timedelta(weeks=1)}
#: How far ahead a next occurrence is looked for: a rule with nothing in this window has ended.
_HORIZON: Final = {"HOURLY": timedelta(days=366)}
_DEFAULT_HORIZON: Final = timedelta(days=3653)
#: The Gregorian calendar repeats exactly every 400 years (146,097 days, a whole number of weeks).
_CYCLE_YEARS: Final = 400
#: Rules are stepped in naive local wall time, as dateutil does for an aware start.
_VALIDATION_START: Final = datetime(2026, 1, 1)  # noqa: DTZ001


def rule_parts(rule: str) -> dict[str, str]:
    """``FREQ=DAILY;INTERVAL=2`` -> ``{"FREQ": "DAILY", "INTERVAL": "2"}``."""
    return dict(p.split("=", 1) for p in rule.split(";") if "=" in p)


def validate_rrule(rule: str) -> None:
    """Refuse a rule that is malformed, repeats faster than hourly, or never yields a time.

    The rule is stepped before it is accepted: it must give an occurrence within ten years (one
    year for hourly rules). Every later step is bounded as :func:`next_occurrence` says.
    """
    if len(rule) > _MAX_RULE_LENGTH:
        raise InvalidInput(
            "recurrence", f"The repeat rule is longer than {_MAX_RULE_LENGTH} characters; {_HELP}."
        )
    parts = rule_parts(rule)
    problem = _limits_problem(parts)
    if problem:
        raise InvalidInput("recurrence", f"'{rule}' {problem}; {_HELP}.")
    try:
        _until(parts)
        start = _VALIDATION_START
        first = _step(parts, start, start - timedelta(seconds=1), None)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidInput("recurrence", f"'{rule}' is not a valid RRULE ({exc}); {_HELP}.") from exc
    if first is None:
        raise InvalidInput(
            "recurrence",
            f"'{rule}' gives no date within {_horizon(parts).days // 365 or 1} year(s): its "
            f"filters never meet (as in BYMONTH=2;BYMONTHDAY=30); {_HELP}.",
        )


def _limits_problem(parts: dict[str, str]) -> str | None:
    freq = parts.get("FREQ", "")
    if freq in ("SECONDLY", "MINUTELY"):
        return "repeats more often than hourly, which a task cannot"
    if freq not in _FREQUENCIES:
        return f"needs FREQ to be one of {', '.join(_FREQUENCIES)}"
    for name, high in (("INTERVAL", _MAX_INTERVAL), ("COUNT", _MAX_COUNT)):
        raw = parts.get(name)
        if raw is not None and not (raw.isascii() and raw.isdigit() and 1 <= int(raw[:7]) <= high):
            return f"needs {name} to be a whole number from 1 to {high}"
    if freq in _FINE:
        extra = sorted(set(parts) - _FINE_PARTS)
        if extra or re.search(r"\d", parts.get("BYDAY", "")):
            what = ", ".join(extra) or "numbered BYDAY"
            return f"uses {what} with FREQ={freq}; days of the month or year need FREQ=MONTHLY or YEARLY"
    return None


def _until(parts: dict[str, str]) -> datetime | None:
    raw = parts.get("UNTIL")
    if raw is None:
        return None
    found = isoparse(raw)
    return found if found.tzinfo else found.replace(tzinfo=UTC)


def _interval(parts: dict[str, str]) -> int:
    return int(parts.get("INTERVAL", "1")[:7])


def _horizon(parts: dict[str, str]) -> timedelta:
    freq = parts.get("FREQ", "")
    longest = 3 * _interval(parts) * _PERIOD.get(freq, timedelta(days=366))
    return max(_HORIZON.get(freq, _DEFAULT_HORIZON), longest)


def _years_later(moment: datetime, years: int) -> datetime:
    return moment.replace(year=moment.year + years)  # a multiple of 400: Feb 29 stays a leap day


def _step(parts: dict[str, str], start: datetime, since: datetime, until: datetime | None) -> datetime | None:
    """The rule's first wall time after ``since`` for a series from ``start`` (naive local times).

    dateutil walks period by period and stops only at a match, at UNTIL once something matched,
    or at year 9999. So the series starts a whole number of intervals (or 400-year cycles) before
    ``since``, and the search moves by whole cycles to the calendar's end: a rule that never
    matches then stops within a few hundred years of periods, not after eight thousand.
    """
    freq, interval, horizon = parts["FREQ"], _interval(parts), _horizon(parts)
    if freq in _PERIOD:
        period = interval * _PERIOD[freq]
        if since - start > 2 * period:
            start += ((since - start) // period - 1) * period
    else:
        cycle = _CYCLE_YEARS * interval
        start = _years_later(
            start, (since.year - start.year - 1) // cycle * cycle if since.year - start.year > cycle else 0
        )
    if _never_reached(parts, start):
        return None
    end = since + horizon if since.year < 9999 - horizon.days // 365 - 1 else datetime.max  # noqa: DTZ901
    shift = max(0, (9998 - end.year) // _CYCLE_YEARS * _CYCLE_YEARS)
    text = ";".join(f"{k}={v}" for k, v in parts.items() if k not in ("COUNT", "UNTIL"))
    built = rrulestr(text, dtstart=_years_later(start, shift))
    if not isinstance(built, rrule):
        raise ValueError("not a single RRULE")
    last = min(until, end) if until else end
    bounded = built.replace(until=_years_later(last, shift) if last.year + shift <= 9999 else None)
    found = bounded.after(_years_later(since, shift), inc=False)
    return None if found is None else _years_later(found, -shift)


def _never_reached(parts: dict[str, str], start: datetime) -> bool:
    """Hourly and daily steps that can never land on an allowed weekday or hour."""
    freq, interval = parts["FREQ"], _interval(parts)
    if freq not in ("HOURLY", "DAILY"):
        return False
    days = {_weekday(d) for d in parts["BYDAY"].split(",")} if "BYDAY" in parts else set(range(7))
    if freq == "DAILY":
        return not any((start.weekday() + interval * k) % 7 in days for k in range(7))
    hours = {int(h) for h in parts["BYHOUR"].split(",")} if "BYHOUR" in parts else set(range(24))
    slots = ((start + timedelta(hours=interval * k)) for k in range(168))
    return not any(s.weekday() in days and s.hour in hours for s in slots)


_DAY_INDEX: Final = {"MO": 0, "TU": 1, "WE": 2, "TH": 3, "FR": 4, "SA": 5, "SU": 6}


def _weekday(code: str) -> int:
    if code not in _DAY_INDEX:
        raise ValueError(f"BYDAY has {code!r}, not one of {','.join(_DAY_INDEX)}")
    return _DAY_INDEX[code]


def next_occurrence(
    rule: str, *, anchor: datetime, after: datetime, occurrence: int, tz: str = "UTC"
) -> datetime | None:
    """The first time of ``rule`` strictly after ``after``, or None when the rule has ended.

    ``anchor`` is the series' first time (RRULE's DTSTART, which also fixes the time of day);
    ``occurrence`` is how many occurrences the series already had, so COUNT is respected even
    when occurrences are computed from completion times. Days and times are read in zone
    ``tz`` so "every monday 9:00" stays Monday 9:00 local across DST changes. A rule with no
    time within its horizon has ended, and so has one that breaks the limits of
    :func:`validate_rrule` (saved before rules were checked), with a warning: a step is short.
    """
    parts = rule_parts(rule)
    if problem := _limits_problem(parts):
        log.warning("repeat rule %r %s: the series ends", rule, problem)
        return None
    if "COUNT" in parts and occurrence >= int(parts["COUNT"][:7]):
        return None
    local = zone(tz)

    def wall(moment: datetime) -> datetime:
        return as_utc(moment).astimezone(local).replace(tzinfo=None)

    try:
        until = _until(parts)
        found = _step(parts, wall(anchor), wall(after), wall(until) if until else None)
    except (ValueError, TypeError, OverflowError) as exc:
        log.warning("repeat rule %r cannot be stepped (%s): the series ends", rule, exc)
        return None
    return None if found is None else as_utc(found.replace(tzinfo=local))


def describe(rule: str | None) -> str | None:
    """A short human reading of an RRULE ('every 2 weeks on MO,TH'), for replies and lists."""
    if not rule:
        return None
    parts = rule_parts(rule)
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
