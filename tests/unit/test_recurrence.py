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


@pytest.mark.parametrize(
    ("phrase", "reason"),
    [
        ("every 0 days", "INTERVAL to be a whole number from 1 to 1000"),
        ("FREQ=DAILY;INTERVAL=0", "INTERVAL to be a whole number from 1 to 1000"),
        ("FREQ=WEEKLY;INTERVAL=-1", "INTERVAL to be a whole number from 1 to 1000"),
        ("FREQ=DAILY;INTERVAL=" + "9" * 40, "INTERVAL to be a whole number from 1 to 1000"),
        ("FREQ=DAILY;INTERVAL=٣", "INTERVAL to be a whole number from 1 to 1000"),
        ("FREQ=DAILY;COUNT=0", "COUNT to be a whole number from 1 to 100000"),
        ("FREQ=SECONDLY", "more often than hourly"),
        ("FREQ=MINUTELY;INTERVAL=5", "more often than hourly"),
        ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", "gives no date within 10 year"),
        ("FREQ=MONTHLY;BYMONTH=4;BYMONTHDAY=31", "gives no date within 10 year"),
        ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO", "gives no date within 10 year"),
        ("FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30", "need FREQ=MONTHLY or YEARLY"),
        ("FREQ=HOURLY;BYYEARDAY=400", "need FREQ=MONTHLY or YEARLY"),
        ("FREQ=WEEKLY;BYDAY=1MO", "need FREQ=MONTHLY or YEARLY"),
        ("FREQ=DAILY;BYDAY=" + ",".join(["MO"] * 200), "longer than 500 characters"),
    ],
)
def test_rules_that_could_stall_a_step_are_refused_quickly_with_the_reason(phrase: str, reason: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        to_rrule(phrase)
    assert caught.value.field == "recurrence"
    assert reason in caught.value.message
    assert "every weekday" in caught.value.message  # and what would work


@pytest.mark.parametrize(
    "legacy_rule",
    ["FREQ=DAILY;INTERVAL=0", "FREQ=SECONDLY", "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30",
     "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30", "FREQ=HOURLY;INTERVAL=2;BYHOUR=5", "FREQ=DAILY;INTERVAL=x"],
)  # fmt: skip
def test_a_rule_saved_before_rules_were_checked_ends_its_series_instead_of_spinning(legacy_rule: str) -> None:
    anchor = datetime(2026, 1, 1, 6, tzinfo=UTC)  # 06:00, so "every 2 hours at 05:00" never meets
    after = datetime(2026, 12, 6, 10, tzinfo=UTC)
    assert next_occurrence(legacy_rule, anchor=anchor, after=after, occurrence=1) is None


def test_a_series_from_long_ago_steps_straight_to_the_next_time() -> None:
    anchor = datetime(1, 1, 1, 9, tzinfo=UTC)
    after = datetime(2026, 12, 6, 10, tzinfo=UTC)
    assert next_occurrence("FREQ=HOURLY", anchor=anchor, after=after, occurrence=9) == datetime(
        2026, 12, 6, 11, tzinfo=UTC
    )
    assert next_occurrence("FREQ=DAILY;INTERVAL=3", anchor=anchor, after=after, occurrence=9) is not None
    last = datetime(9999, 12, 30, 9, tzinfo=UTC)
    assert next_occurrence("FREQ=DAILY", anchor=anchor, after=last, occurrence=9) == datetime(
        9999, 12, 31, 9, tzinfo=UTC
    )
    assert next_occurrence("FREQ=YEARLY", anchor=anchor, after=last, occurrence=9) is None


_SAMPLE_RULES = [
    "FREQ=HOURLY", "FREQ=HOURLY;INTERVAL=5;BYDAY=MO,WE", "FREQ=HOURLY;BYHOUR=9,17;BYMINUTE=30",
    "FREQ=DAILY", "FREQ=DAILY;INTERVAL=3", "FREQ=DAILY;BYDAY=SA,SU", "FREQ=DAILY;INTERVAL=2;BYMONTH=3,9",
    "FREQ=WEEKLY;BYDAY=MO,TH", "FREQ=WEEKLY;INTERVAL=2;BYDAY=FR",
    "FREQ=WEEKLY;INTERVAL=3;WKST=SU;BYDAY=SU,MO", "FREQ=MONTHLY", "FREQ=MONTHLY;BYDAY=-1FR",
    "FREQ=MONTHLY;BYMONTHDAY=31", "FREQ=MONTHLY;INTERVAL=5;BYMONTHDAY=-1",
    "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1", "FREQ=YEARLY", "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29",
    "FREQ=YEARLY;INTERVAL=3;BYWEEKNO=20;BYDAY=MO", "FREQ=YEARLY;BYYEARDAY=100,200",
]  # fmt: skip


@pytest.mark.parametrize("rule", _SAMPLE_RULES)
@pytest.mark.parametrize("tz", ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"])
def test_bounded_steps_give_the_times_a_plain_walk_of_the_whole_series_gives(rule: str, tz: str) -> None:
    """The short cuts (a later series start, the walk moved by whole 400-year cycles) change no
    occurrence: compare with dateutil walking the whole series from its start."""
    from dateutil.rrule import rrulestr

    from tasks.clock import zone

    local = zone(tz)
    long_ago = [(datetime(1590, 5, 6, 7, tzinfo=UTC), datetime(2026, 2, 28, 12, tzinfo=UTC))]
    for anchor, after in [
        *(long_ago if rule.startswith(("FREQ=MONTHLY", "FREQ=YEARLY")) else []),
        (datetime(2026, 3, 29, 0, 15, tzinfo=UTC), datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),
        (datetime(2024, 2, 29, 23, 0, tzinfo=UTC), datetime(2026, 3, 29, 1, 0, tzinfo=UTC)),
        (datetime(2026, 11, 27, 17, tzinfo=UTC), datetime(2026, 11, 27, 17, tzinfo=UTC)),
    ]:
        series = rrulestr(rule, dtstart=anchor.astimezone(local))
        expected = series.after(after.astimezone(local), inc=False)
        got = next_occurrence(rule, anchor=anchor, after=after, occurrence=1, tz=tz)
        assert got == (expected.astimezone(UTC) if expected else None), (rule, tz, anchor, after)
