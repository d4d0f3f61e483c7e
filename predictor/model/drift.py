"""Input drift: each feature's training deciles, and a histogram of served inputs over them.

At training time `reference` takes each feature's decile boundaries from the training split
and the share of training rows in each bucket they make (about 10% each; more where many
rows share one value, as `HouseAge` does at 52); they go into `metadata.json` under "drift".

The server's `FeatureHistogram` counts every validated row into those buckets and exports:

- `housing_feature_value{feature, model_version}`: a Prometheus histogram whose `le` are the
  boundaries (for the inputs' quantiles, `histogram_quantile`), buckets only: the rows
  counted are its `+Inf` bucket, and no `_sum` is kept (nothing needs it);
- `housing_feature_training_share{feature, model_version, le, previous_le}`: the training
  share of each bucket `(previous_le, le]`, so the recording rules
  (deploy/base/drift-rules.yaml) compute each feature's PSI from bucket rates summed across
  pods without a boundary written into them: a retrained model brings its own.

A request's rows are appended to a list (`observe`) and counted together, one vectorised
comparison for thousands of rows, at the next scrape: not 8 `Histogram.observe` calls per
row.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector
from prometheus_client.utils import floatToGoString

from predictor.protocol.schema import FEATURES, N_FEATURES

METADATA_KEY: Final = "drift"
QUANTILES: Final = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
HISTOGRAM_NAME: Final = "housing_feature_value"
SHARE_NAME: Final = "housing_feature_training_share"
# The `previous_le` of each feature's first bucket.
BELOW_ALL: Final = "-Inf"
# Rows gathered before they are counted without waiting for a scrape (bounds the memory).
FLUSH_ROWS: Final = 4096


def reference(training_rows: np.ndarray) -> dict[str, Any]:
    """The "drift" entry of a model's metadata, from its training split's (n, 8) rows.

    Boundaries are the deciles (NumPy's linear interpolation), repeats dropped, so they
    strictly increase as Prometheus's `le` must; shares are the training rows counted in
    each bucket exactly as the server counts served rows.
    """
    boundaries: dict[str, list[float]] = {}
    shares: dict[str, list[float]] = {}
    for column, name in enumerate(FEATURES):
        values = training_rows[:, column]
        bounds = np.unique(np.quantile(values, QUANTILES))
        buckets = np.searchsorted(bounds, values, side="left")  # value <= bound: Prometheus's le
        counts = np.bincount(buckets, minlength=len(bounds) + 1)
        boundaries[name] = bounds.tolist()
        shares[name] = (counts / len(values)).tolist()
    return {"quantiles": list(QUANTILES), "boundaries": boundaries, "shares": shares}


@dataclass(frozen=True)
class DriftReference:
    """The "drift" entry of a model's metadata, checked."""

    boundaries: tuple[tuple[float, ...], ...]
    """Per feature, in schema order: strictly increasing finite bucket bounds."""
    shares: tuple[tuple[float, ...], ...]
    """Per feature: training share of each bucket, the last one being above every bound."""

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> DriftReference | None:
        """None when the metadata has no drift entry (a model trained before it existed)."""
        entry = metadata.get(METADATA_KEY)
        if entry is None:
            return None
        try:
            boundaries = tuple(tuple(float(v) for v in entry["boundaries"][f]) for f in FEATURES)
            shares = tuple(tuple(float(v) for v in entry["shares"][f]) for f in FEATURES)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"metadata {METADATA_KEY!r} is malformed: {e!r}") from e
        for name, bounds, share in zip(FEATURES, boundaries, shares, strict=True):
            if not bounds or not all(math.isfinite(b) for b in bounds):
                raise ValueError(f"{METADATA_KEY}: {name} needs finite boundaries")
            if any(b >= a for b, a in itertools.pairwise(bounds)):
                raise ValueError(f"{METADATA_KEY}: {name}'s boundaries must strictly increase")
            if len(share) != len(bounds) + 1 or not math.isclose(sum(share), 1.0):
                raise ValueError(f"{METADATA_KEY}: {name} needs one share per bucket, summing to 1")
        return cls(boundaries, shares)


class Exported:
    """The one drift histogram the default registry exports: a newly loaded model's
    replaces the previous one's (several models in one process, as in tests, share the
    metric names)."""

    _current: FeatureHistogram | None = None
    _lock = threading.Lock()

    @classmethod
    def replace(cls, histogram: FeatureHistogram | None) -> None:
        with cls._lock:
            if cls._current is not None:
                REGISTRY.unregister(cls._current)
            cls._current = histogram
            if histogram is not None:
                REGISTRY.register(histogram)


class FeatureHistogram(Collector):
    """Counts served rows into each feature's training buckets; a Prometheus collector."""

    def __init__(self, reference: DriftReference, model_version: str) -> None:
        self._reference = reference
        self._version = model_version
        widest = max(len(b) for b in reference.boundaries)
        # Padded with +inf: a value is never above a padding bound, so padding counts nothing.
        self._bounds = np.full((N_FEATURES, widest), np.inf)
        for column, bounds in enumerate(reference.boundaries):
            self._bounds[column, : len(bounds)] = bounds
        self._buckets = widest + 1
        self._offsets = np.arange(N_FEATURES) * self._buckets
        self._counts = np.zeros(N_FEATURES * self._buckets, dtype=np.int64)
        # Requests' rows wait here and are counted together, vectorised, at the next scrape
        # or once FLUSH_ROWS have gathered: a request pays one append, not NumPy's fixed
        # cost per call (microseconds, more than counting a row takes).
        self._pending: list[np.ndarray] = []
        self._pending_rows = 0
        self._lock = threading.Lock()

    def observe(self, rows: np.ndarray) -> None:
        """Count validated (n, 8) rows (not modified afterwards: they are kept until counted)."""
        with self._lock:
            self._pending.append(rows)
            self._pending_rows += len(rows)
            if self._pending_rows >= FLUSH_ROWS:
                self._count_pending()

    def _count_pending(self) -> None:
        """Count the waiting rows into their buckets (value <= le); the lock is held."""
        if not self._pending:
            return
        rows = np.vstack(self._pending)
        self._pending.clear()
        self._pending_rows = 0
        # How many bounds lie strictly below each value: its bucket.
        buckets = (rows[:, :, None] > self._bounds).sum(axis=2) + self._offsets
        self._counts += np.bincount(buckets.ravel(), minlength=len(self._counts))

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            self._count_pending()
            counts = self._counts.reshape(N_FEATURES, self._buckets).copy()
        histogram = HistogramMetricFamily(
            HISTOGRAM_NAME,
            "Validated input values by feature, in the buckets of the training split's deciles.",
            labels=["feature", "model_version"],
        )
        share = GaugeMetricFamily(
            SHARE_NAME,
            "Share of the training split in each bucket (previous_le, le] of "
            f"{HISTOGRAM_NAME}: the reference its drift (PSI) is measured against.",
            labels=["feature", "model_version", "le", "previous_le"],
        )
        for column, name in enumerate(FEATURES):
            bounds = self._reference.boundaries[column]
            uppers = [*map(floatToGoString, bounds), "+Inf"]
            cumulative = np.cumsum(counts[column, : len(uppers)]).tolist()
            # No _sum (nor, then, _count): nothing here needs the sum, and summing costs.
            histogram.add_metric(
                [name, self._version], list(zip(uppers, cumulative, strict=True)), None
            )
            lowers = [BELOW_ALL, *uppers[:-1]]
            shares = self._reference.shares[column]
            for upper, lower, value in zip(uppers, lowers, shares, strict=True):
                share.add_metric([name, self._version, upper, lower], value)
        yield histogram
        yield share
