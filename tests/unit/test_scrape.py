"""``observability.scrape.Scrape`` reads a real ``prometheus_client`` exposition back."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from observability.scrape import Scrape


def _rows_histogram() -> tuple[CollectorRegistry, Histogram]:
    registry = CollectorRegistry()
    rows = Histogram("rows", "Rows a round sent", ["phase"], buckets=(1, 5, 10), registry=registry)
    return registry, rows


def test_the_mean_of_a_histogram_is_its_sum_over_its_count_and_none_without_observations() -> None:
    registry, rows = _rows_histogram()
    rows.labels(phase="claim")  # a series with no observation yet
    assert Scrape.of(generate_latest(registry).decode()).mean("rows") is None
    for value in (1, 2, 6):
        rows.labels(phase="claim").observe(value)
    rows.labels(phase="mark").observe(10)
    scrape = Scrape.of(generate_latest(registry).decode())
    assert scrape.mean("rows", phase="claim") == 3.0
    assert scrape.mean("rows") == 19 / 4  # over every series the labels leave open


def test_between_two_scrapes_the_mean_is_of_what_was_observed_in_between() -> None:
    registry, rows = _rows_histogram()
    rows.labels(phase="claim").observe(9)
    before = Scrape.of(generate_latest(registry).decode())
    rows.labels(phase="claim").observe(2)
    rows.labels(phase="claim").observe(4)
    after = Scrape.of(generate_latest(registry).decode())
    assert after.minus(before).mean("rows", phase="claim") == 3.0
    assert before.minus(before).mean("rows") is None
