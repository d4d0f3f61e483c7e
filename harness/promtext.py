"""Read a server's Prometheus `/metrics`: counter totals and histogram percentiles.

Percentiles come from the difference of two scrapes (before and after a run), interpolated
linearly inside a bucket as Prometheus' `histogram_quantile` does, so they are only as fine
as the histogram's buckets.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import httpx
from prometheus_client.parser import text_string_to_metric_families

PERCENTILES: Final = (50, 90, 95, 99)


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float


Scrape = list[Sample]


def scrape(base_url: str) -> Scrape:
    text = httpx.get(f"{base_url}/metrics", timeout=10.0).text
    return parse(text)


def parse(text: str) -> Scrape:
    return [
        Sample(sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def _matches(sample: Sample, name: str, labels: Mapping[str, str]) -> bool:
    return sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())


def total(samples: Scrape, name: str, labels: Mapping[str, str] | None = None) -> float:
    """Sum of every sample called `name` whose labels include `labels`."""
    return sum(s.value for s in samples if _matches(s, name, labels or {}))


def delta(
    before: Scrape, after: Scrape, name: str, labels: Mapping[str, str] | None = None
) -> float:
    return total(after, name, labels) - total(before, name, labels)


def cache_hit_ratio(before: Scrape, after: Scrape) -> float | None:
    """Share of rows this project answered from a cache tier between two scrapes."""
    hits = delta(before, after, "housing_cache_hits_total")
    misses = delta(before, after, "housing_cache_misses_total")
    return hits / (hits + misses) if hits + misses > 0 else None


def _cumulative(samples: Scrape, histogram: str, labels: Mapping[str, str]) -> dict[float, float]:
    """Cumulative count per bucket bound, summed over the label sets that match `labels`."""
    counts: dict[float, float] = defaultdict(float)
    for s in samples:
        if _matches(s, f"{histogram}_bucket", labels):
            counts[float(s.labels["le"])] += s.value
    return counts


def _bucket_deltas(
    before: Scrape, after: Scrape, histogram: str, labels: Mapping[str, str]
) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of the observations made between the two scrapes."""
    start, end = _cumulative(before, histogram, labels), _cumulative(after, histogram, labels)
    return [(bound, end[bound] - start.get(bound, 0.0)) for bound in sorted(end)]


def quantile(buckets: Sequence[tuple[float, float]], q: float) -> float | None:
    """The q-quantile (0..1) of cumulative `buckets`; None when they hold no observation."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower  # beyond the last finite bucket: its bound is all we know
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def percentiles_ms(
    before: Scrape, after: Scrape, histogram: str, labels: Mapping[str, str] | None = None
) -> dict[str, float | None]:
    """P50/P90/P95/P99 in milliseconds of the observations made between two scrapes."""
    buckets = _bucket_deltas(before, after, histogram, labels or {})
    result: dict[str, float | None] = {}
    for p in PERCENTILES:
        value = quantile(buckets, p / 100)
        result[f"p{p}"] = None if value is None else value * 1000
    return result
