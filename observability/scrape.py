"""A ``GET /metrics`` body read back: what tests, benchmarks and scripts use instead of parsing
the text themselves (``prometheus_client``'s own parser does the reading).

    scrape = Scrape.of(httpx.get(f"{url}/metrics").text)
    scrape.value("todo_outbox_backlog")                                  # 0.0, or None if absent
    scrape.value("todo_relay_publish_duration_seconds_count", topic="task-events")
    scrape.quantile("todo_relay_lag_seconds", 0.5)                       # from the buckets
    scrape.mean("todo_relay_round_rows")                                 # _sum / _count
    later.minus(scrape).quantile("todo_relay_lag_seconds", 0.5)          # between two scrapes
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


@dataclass(frozen=True)
class Scrape:
    samples: tuple[Sample, ...]

    @classmethod
    def of(cls, text: str) -> Scrape:
        return cls(tuple(s for family in text_string_to_metric_families(text) for s in family.samples))

    def value(self, name: str, **labels: str) -> float | None:
        """The sample ``name`` whose labels include ``labels`` (the sum if several match: a
        counter over the labels not given); None when there is none."""
        found = [s.value for s in self._matching(name, labels)]
        return sum(found) if found else None

    def quantile(self, histogram: str, q: float, **labels: str) -> float | None:
        """The ``q`` quantile of a histogram, estimated from its buckets as PromQL's
        ``histogram_quantile`` does (linear within a bucket); None without observations."""
        buckets: dict[float, float] = {}
        for sample in self._matching(f"{histogram}_bucket", labels):
            bound = float(sample.labels["le"])
            buckets[bound] = buckets.get(bound, 0.0) + sample.value
        bounds = sorted(buckets)
        if not bounds or buckets[bounds[-1]] == 0:
            return None
        rank, lower, below = q * buckets[bounds[-1]], 0.0, 0.0
        for bound in bounds:
            if buckets[bound] >= rank:
                if math.isinf(bound):
                    return lower  # beyond the highest finite bucket: its bound, as PromQL says
                share = (rank - below) / (buckets[bound] - below) if buckets[bound] > below else 1.0
                return lower + (bound - lower) * share
            lower, below = bound, buckets[bound]
        return None

    def mean(self, histogram: str, **labels: str) -> float | None:
        """The mean of a histogram's observations (``_sum`` over ``_count``); None without any."""
        count = self.value(f"{histogram}_count", **labels)
        return (self.value(f"{histogram}_sum", **labels) or 0.0) / count if count else None

    def minus(self, earlier: Scrape) -> Scrape:
        """What the counters and histograms counted since ``earlier`` (gauges come out as the
        difference too, which means nothing: read them from a single scrape)."""
        before = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in earlier.samples}
        return Scrape(
            tuple(
                s._replace(value=s.value - before.get((s.name, tuple(sorted(s.labels.items()))), 0.0))
                for s in self.samples
            )
        )

    def _matching(self, name: str, labels: dict[str, str]) -> list[Sample]:
        return [s for s in self.samples if s.name == name and labels.items() <= s.labels.items()]
