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
