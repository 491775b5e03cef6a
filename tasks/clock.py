"""Time helpers: everything inside is timezone-aware UTC; zones appear only at the edges."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tasks.errors import InvalidInput

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Return an aware UTC datetime; naive values are taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput(
            "timezone", f"Unknown time zone '{name}'; use an IANA name such as 'Europe/Berlin'."
        ) from exc


def machine_zone_name() -> str:
    """The IANA name of this machine's zone, or UTC when it cannot be told."""
    try:
        with open("/etc/timezone", encoding="utf-8") as handle:
            name = handle.read().strip()
            if name:
                zone(name)
                return name
    except (OSError, InvalidInput):
        pass
    try:
        import os

        link = os.path.realpath("/etc/localtime")
        if "zoneinfo/" in link:
            name = link.split("zoneinfo/", 1)[1]
            zone(name)
            return name
    except (OSError, InvalidInput):
        pass
    return "UTC"
