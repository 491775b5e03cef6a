from datetime import UTC, datetime

import pytest

from tasks.errors import InvalidInput
from tasks.timeparse import minutes_phrase, parse_when

NOW = datetime(2026, 11, 26, 16, 40, tzinfo=UTC)  # Thursday 17:40 in Berlin


@pytest.mark.parametrize(
    ("phrase", "expected_utc"),
    [
        ("tomorrow 5pm", "2026-11-27T16:00:00+00:00"),
        ("in 2 hours", "2026-11-26T18:40:00+00:00"),
        ("friday 8pm", "2026-11-27T19:00:00+00:00"),
        ("at 9am tomorrow", "2026-11-27T08:00:00+00:00"),
        ("today at 9", "2026-11-26T08:00:00+00:00"),
        ("tomorrow", "2026-11-27T22:59:00+00:00"),
        ("next friday", "2026-11-27T22:59:00+00:00"),
        ("2026-12-01T10:00:00Z", "2026-12-01T10:00:00+00:00"),
        ("2026-12-01T10:00", "2026-12-01T09:00:00+00:00"),
        ("tonight", "2026-11-26T19:00:00+00:00"),
    ],
)
def test_phrases_are_read_in_the_users_zone_and_returned_in_utc(phrase: str, expected_utc: str) -> None:
    assert parse_when(phrase, tz="Europe/Berlin", now=NOW).isoformat() == expected_utc


def test_a_day_without_a_time_is_morning_for_reminders() -> None:
    when = parse_when("tomorrow", tz="Europe/Berlin", now=NOW, date_only="morning")
    assert when.isoformat() == "2026-11-27T08:00:00+00:00"


def test_the_same_phrase_means_different_instants_in_different_zones() -> None:
    berlin = parse_when("tomorrow 5pm", tz="Europe/Berlin", now=NOW)
    new_york = parse_when("tomorrow 5pm", tz="America/New_York", now=NOW)
    assert (new_york - berlin).total_seconds() == 6 * 3600


@pytest.mark.parametrize("phrase", ["tomorow 5pm", "whenever", ""])
def test_unreadable_times_say_what_would_work(phrase: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_when(phrase, tz="UTC", now=NOW)
    assert caught.value.field == "due"
    assert "tomorrow 17:00" in caught.value.message


def test_an_unknown_zone_is_refused_clearly() -> None:
    with pytest.raises(InvalidInput, match="IANA"):
        parse_when("tomorrow", tz="Mars/Olympus", now=NOW)


@pytest.mark.parametrize(
    ("text", "minutes"), [("30 minutes", 30), ("1 hour", 60), ("2h", 120), ("1 day before", 1440)]
)
def test_durations(text: str, minutes: int) -> None:
    assert minutes_phrase(text) == minutes


def test_a_non_duration_is_not_minutes() -> None:
    assert minutes_phrase("tomorrow") is None


ISO_TIMES = [
    "2026-12-01T10:00:00Z",
    "2026-12-01T10:00",
    "2026-12-01 10:00",
    "2026-12-01T10:00:30",
    "2026-12-01T10:00:30.250000",
    "2026-11-23T00:00:00+01:00",
    "2026-11-30T00:00:00+0100",
    "2026-11-30T23:59:59-05:00",
    "2027-03-28T01:30",  # the hour before Berlin's clocks go forward
    "2027-07-01T12:00",  # summer time
    "2026-10-25T03:30",  # just after the clocks went back
    "  2026-12-01T10:00:00Z ",
]


@pytest.mark.parametrize("text", ISO_TIMES)
@pytest.mark.parametrize("tz", ["Europe/Berlin", "America/New_York", "UTC", "Asia/Kolkata"])
def test_iso_date_times_are_read_directly_and_mean_what_dateparser_makes_of_them(text: str, tz: str) -> None:
    from tasks import clock, timeparse

    assert timeparse._iso_datetime(text, clock.zone(tz)) is not None, "not taken by the fast path"
    direct = parse_when(text, tz=tz, now=NOW)
    through_dateparser = timeparse._parse_natural(text, tz=tz, now=NOW, field="due", date_only="end_of_day")
    assert direct == through_dateparser
    offset = direct.utcoffset()
    assert offset is not None and offset.total_seconds() == 0


@pytest.mark.parametrize(
    "text",
    [
        "2026-12-01",  # a day: the end-of-day or morning rule applies
        "2026-13-01T10:00",  # no such month
        "2026-12-01T10",
        "2026-12-01T10:00:00z",
        "1 Dec 2026 10:00",
        "2026-10-25T02:30",  # Berlin's repeated hour
        "2027-03-28T02:30",  # Berlin's skipped hour
    ],
)
def test_what_is_not_a_plain_unambiguous_iso_date_and_time_goes_to_dateparser(text: str) -> None:
    from tasks import clock, timeparse

    assert timeparse._iso_datetime(text, clock.zone("Europe/Berlin")) is None
