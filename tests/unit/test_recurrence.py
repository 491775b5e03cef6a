from datetime import UTC, datetime

import pytest

from tasks.errors import InvalidInput
from tasks.recurrence import describe, next_occurrence, to_rrule


@pytest.mark.parametrize(
    ("phrase", "rule"),
    [
        ("daily", "FREQ=DAILY"),
        ("every day", "FREQ=DAILY"),
        ("every weekday", "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"),
        ("every 2 weeks on monday and thursday", "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TH"),
        ("monthly on the last friday", "FREQ=MONTHLY;BYDAY=-1FR"),
        ("monthly on the 15th", "FREQ=MONTHLY;BYMONTHDAY=15"),
        ("every 3 days", "FREQ=DAILY;INTERVAL=3"),
        ("every monday", "FREQ=WEEKLY;BYDAY=MO"),
        ("every tuesday and friday", "FREQ=WEEKLY;BYDAY=TU,FR"),
        ("every other week", "FREQ=WEEKLY;INTERVAL=2"),
        ("yearly", "FREQ=YEARLY"),
        ("weekly for 5 times", "FREQ=WEEKLY;COUNT=5"),
        ("daily until 2026-12-31", "FREQ=DAILY;UNTIL=20261231T235959Z"),
        ("RRULE:FREQ=WEEKLY;BYDAY=MO", "FREQ=WEEKLY;BYDAY=MO"),
        ("FREQ=DAILY;UNTIL=20261231", "FREQ=DAILY;UNTIL=20261231T235959Z"),
    ],
)
def test_phrases_become_rrules(phrase: str, rule: str) -> None:
    assert to_rrule(phrase) == rule


@pytest.mark.parametrize("phrase", ["sometimes", "every blue moon", "FREQ=SOMETIMES", ""])
def test_unknown_phrases_are_refused_with_examples(phrase: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        to_rrule(phrase)
    assert caught.value.field == "recurrence"
    assert "every weekday" in caught.value.message


def test_next_monthly_last_friday() -> None:
    anchor = datetime(2026, 11, 27, 17, tzinfo=UTC)
    nxt = next_occurrence("FREQ=MONTHLY;BYDAY=-1FR", anchor=anchor, after=anchor, occurrence=1)
    assert nxt == datetime(2026, 12, 25, 17, tzinfo=UTC)


def test_weekly_rules_keep_local_wall_time_across_dst() -> None:
    anchor = datetime(2026, 3, 23, 8, tzinfo=UTC)  # Monday 09:00 CET
    nxt = next_occurrence(
        "FREQ=WEEKLY;BYDAY=MO", anchor=anchor, after=anchor, occurrence=1, tz="Europe/Berlin"
    )
    assert nxt == datetime(2026, 3, 30, 7, tzinfo=UTC)  # Monday 09:00 CEST


def test_count_ends_the_series() -> None:
    anchor = datetime(2026, 11, 27, 17, tzinfo=UTC)
    assert next_occurrence("FREQ=DAILY;COUNT=2", anchor=anchor, after=anchor, occurrence=2) is None
    assert next_occurrence("FREQ=DAILY;COUNT=3", anchor=anchor, after=anchor, occurrence=2) is not None


def test_until_ends_the_series() -> None:
    anchor = datetime(2026, 11, 27, 17, tzinfo=UTC)
    late = datetime(2026, 11, 28, 17, tzinfo=UTC)
    assert (
        next_occurrence("FREQ=DAILY;UNTIL=20261128T235959Z", anchor=anchor, after=late, occurrence=2) is None
    )


def test_describe_reads_back_a_rule() -> None:
    assert describe("FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TH") == "every 2 weeks on MO,TH"
    assert describe(None) is None
