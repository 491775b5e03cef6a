"""Natural-language times ("tomorrow 5pm", "next friday", "in 2 hours") in the user's zone.

>>> parse_when("tomorrow 5pm", tz="Europe/Berlin", now=...)  # aware UTC datetime
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import Final, Literal

from dateparser.date import DateDataParser

from tasks.clock import as_utc, zone
from tasks.errors import InvalidInput

DateOnlyDefault = Literal["end_of_day", "morning", "start_of_day"]

_BARE_HOUR: Final = re.compile(r"\b(at|by)\s+(\d{1,2})\b(?![:.]\d)(?!\s*(?:am|pm|a\.m\.|p\.m\.))", re.I)
# dateparser reports "no time given" when the time equals the reference time, so look ourselves.
_HAS_TIME: Final = re.compile(
    r"\d{1,2}[:.]\d{2}|\b\d{1,2}\s*(?:am|pm|a\.m\.|p\.m\.)|\bnoon\b|\bmidnight\b|\bnow\b|"
    r"\bin\s+\d+\s*(?:m|min|mins|minutes?|h|hrs?|hours?)\b|\b(?:minutes?|hours?)\s+(?:from|ago)\b",
    re.I,
)
_ISO_DATETIME: Final = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:?\d{2})?"
)
#: The times a task may carry: far enough from the calendar's ends (years 1 and 9999) that
#: zone offsets, reminders before a due time and the next occurrences stay inside it.
EARLIEST: Final = datetime(1900, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(9000, 1, 1, tzinfo=UTC)
_MORNING: Final = time(9, 0)
_END_OF_DAY: Final = time(23, 59)


def _normalise(text: str) -> str:
    cleaned = " ".join(text.strip().split())
    cleaned = re.sub(r"\bend of (the )?day\b", "today 23:59", cleaned, flags=re.I)
    cleaned = re.sub(r"\btonight\b", "today 20:00", cleaned, flags=re.I)
    cleaned = re.sub(r"\bthis evening\b", "today 18:00", cleaned, flags=re.I)
    return _BARE_HOUR.sub(lambda m: f"{m.group(1)} {m.group(2)}:00", cleaned)


def parse_when(
    text: str,
    *,
    tz: str,
    now: datetime,
    field: str = "due",
    date_only: DateOnlyDefault = "end_of_day",
) -> datetime:
    """Parse an absolute or relative time in zone ``tz``; returns aware UTC.

    A phrase that names a day but no time ("tomorrow", "next friday") lands at the end of that
    day (or 09:00 with ``date_only="morning"``, which suits reminders; or its start with
    ``"start_of_day"``, which suits "completed since monday").
    """
    if not text or not text.strip():
        raise InvalidInput(field, f"The {field} time is empty; try 'tomorrow 17:00'.")
    local_zone = zone(tz)
    try:
        parsed = _iso_datetime(text, local_zone) or _parse_natural(
            text, tz=tz, now=now, field=field, date_only=date_only
        )
    except OverflowError:  # e.g. year 1 with a positive offset: before the calendar starts
        parsed = None
    return in_range(parsed, field, text)


def in_range(value: datetime | None, field: str, text: object) -> datetime:
    """``value`` if it lies between ``EARLIEST`` and ``LATEST``; else ``InvalidInput``."""
    try:
        utc = as_utc(value) if value is not None else None
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST <= utc <= LATEST:
        raise InvalidInput(
            field,
            f"The {field} time '{str(text)[:80]}' is out of range; give a time between the years "
            f"{EARLIEST.year} and {LATEST.year - 1}.",
        )
    return utc


def _parse_natural(text: str, *, tz: str, now: datetime, field: str, date_only: DateOnlyDefault) -> datetime:
    """``parse_when`` through dateparser (every phrase that is not a plain ISO date and time)."""
    local_zone = zone(tz)
    local_now = as_utc(now).astimezone(local_zone).replace(tzinfo=None)
    parser = DateDataParser(
        languages=["en"],
        settings={
            "TIMEZONE": tz,
            "TO_TIMEZONE": "UTC",
            "RETURN_AS_TIMEZONE_AWARE": True,
            "PREFER_DATES_FROM": "future",
            "RELATIVE_BASE": local_now,
            "RETURN_TIME_AS_PERIOD": True,
        },
    )
    normalised = _normalise(text)
    data = parser.get_date_data(normalised)
    if data.date_obj is None:
        raise InvalidInput(
            field,
            f"Could not understand '{text}' as a {field} time; try 'tomorrow 17:00', "
            "'next friday 9am', 'in 2 hours' or an ISO 8601 time like '2026-12-01T17:00'.",
        )
    parsed = as_utc(data.date_obj)
    if data.period in ("day", "week", "month", "year") and not _HAS_TIME.search(normalised):
        local_day = parsed.astimezone(local_zone).date()
        at = {"morning": _MORNING, "start_of_day": time(0, 0)}.get(date_only, _END_OF_DAY)
        parsed = as_utc(datetime.combine(local_day, at, tzinfo=local_zone))
    return parsed


def _iso_datetime(text: str, local_zone: tzinfo) -> datetime | None:
    """An ISO 8601 date and time ("2026-12-01T17:00", with or without seconds, fraction, offset
    or ``Z``) read directly: what dateparser makes of it, without dateparser's far slower work
    (models and the listing filters send these). A time without an offset is in the user's zone. Dates
    without a time are left to dateparser (they get the end-of-day or morning rule)."""
    candidate = text.strip()
    if not _ISO_DATETIME.fullmatch(candidate):
        return None
    try:
        parsed = datetime.fromisoformat(candidate)
    except ValueError:
        return None  # e.g. month 13: dateparser explains what it could not read
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=local_zone)
        if parsed.utcoffset() != parsed.replace(fold=1).utcoffset():
            return None  # a local time the clocks skip or repeat: dateparser's reading stands
    return as_utc(parsed)


def minutes_phrase(text: str) -> int | None:
    """'30 minutes', '1 hour', '2h', '1 day' -> minutes, or None when it is not a duration."""
    match = re.fullmatch(
        r"\s*(\d+(?:\.\d+)?)\s*(m|min|mins|minute|minutes|h|hr|hrs|hour|hours|d|day|days)\s*"
        r"(before( due)?)?\s*",
        text,
        re.I,
    )
    if not match:
        return None
    amount = float(match.group(1))
    unit = match.group(2).lower()
    factor = 1 if unit.startswith("m") else 60 if unit.startswith("h") else 1440
    return int(timedelta(minutes=amount * factor).total_seconds() // 60)
