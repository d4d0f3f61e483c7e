"""A pod's measured capacity (`capacity.json`) and the service times drawn from it.

The file holds, per route (`predict` at each measured cache rate, `health`) and per
closed-loop concurrency level, the latency quantiles one server process showed with that
many requests in flight, and the cold start (process start -> ready -> first answer).

A request that starts while `n` requests (itself included) run in the container takes a
time drawn from the latency distribution measured at concurrency `n`: quantiles are
interpolated linearly in probability and between measured levels, and scaled so their
mean obeys Little's law with the measured throughput; above the highest level the
process is saturated, so times grow in proportion to `n`. A cache rate between two
measured ones draws each request from one of the two neighbours' distributions, weighted
by distance, so measured rates are reproduced exactly.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

PREDICT: Final = "predict"
HEALTH: Final = "health"


class ServiceTimes(Protocol):
    """Seconds one request of `route` takes in a container running `concurrency` of them.

    `serial`: the container works on one request at a time, first come first served (one
    event loop), and `sample` is that request's own processing time; otherwise `sample` is
    its whole time in the container.
    """

    serial: bool

    def sample(self, route: str, concurrency: int, rng: random.Random) -> float: ...


@dataclass(frozen=True)
class Level:
    concurrency: int
    requests_per_s: float
    quantiles_ms: dict[float, float]
    """Latency at probability (0..1) -> milliseconds, from min (0) to max (1)."""


class QuantileTable:
    """Latency distributions of one route at several concurrency levels."""

    def __init__(self, levels: Sequence[Level]) -> None:
        if not levels:
            raise ValueError("no levels")
        self.levels = sorted(levels, key=lambda level: level.concurrency)
        self.probabilities = sorted(self.levels[0].quantiles_ms)
        self._cache: dict[int, list[float]] = {}
        self._speedup: dict[int, float] = {}

    def _seconds_at(self, concurrency: int) -> list[float]:
        cached = self._cache.get(concurrency)
        if cached is not None:
            return cached
        levels = self.levels
        values: list[float]
        if concurrency <= levels[0].concurrency:
            values = self._row(levels[0])
        elif concurrency >= levels[-1].concurrency:
            scale = concurrency / levels[-1].concurrency
            values = [v * scale for v in self._row(levels[-1])]
        else:
            upper = next(i for i, lv in enumerate(levels) if lv.concurrency >= concurrency)
            low, high = levels[upper - 1], levels[upper]
            weight = (concurrency - low.concurrency) / (high.concurrency - low.concurrency)
            values = [
                a + (b - a) * weight for a, b in zip(self._row(low), self._row(high), strict=True)
            ]
        self._cache[concurrency] = values
        return values

    def _row(self, level: Level) -> list[float]:
        """The level's quantiles in seconds, scaled so that their mean is n / X(n).

        In a closed loop of n connections Little's law makes the mean latency n over the
        throughput; wrk's counted throughput is exact, its latency histogram is not (at
        one connection its mean can be twice 1 / throughput), so the throughput sets the
        scale and the histogram the shape."""
        seconds = [level.quantiles_ms[p] / 1000 for p in self.probabilities]
        mean = quantile_mean(self.probabilities, seconds)
        little = level.concurrency / level.requests_per_s
        return [v * little / mean for v in seconds] if mean > 0 else seconds

    def sample(self, concurrency: int, u: float) -> float:
        """The service time (s) at probability `u` of the distribution at `concurrency`."""
        values = self._seconds_at(concurrency)
        probabilities = self.probabilities
        i = bisect.bisect_right(probabilities, u)
        if i >= len(probabilities):
            return values[-1]
        p0, p1 = probabilities[i - 1], probabilities[i]
        return values[i - 1] + (values[i] - values[i - 1]) * (u - p0) / (p1 - p0)

    def speedup(self, concurrency: int) -> float:
        """X(1) / X(n): how much less time one request costs with n in flight."""
        cached = self._speedup.get(concurrency)
        if cached is None:
            cached = self.requests_per_s(1) / self.requests_per_s(concurrency)
            self._speedup[concurrency] = cached
        return cached

    def requests_per_s(self, concurrency: int) -> float:
        """Throughput measured (or interpolated) at `concurrency`."""
        levels = self.levels
        if concurrency >= levels[-1].concurrency:
            return levels[-1].requests_per_s
        points = [(lv.concurrency, lv.requests_per_s) for lv in levels]
        return _interpolate(points, concurrency)


def quantile_mean(probabilities: Sequence[float], values: Sequence[float]) -> float:
    """Mean of the distribution whose quantile function is linear between the points."""
    pairs = list(zip(probabilities, values, strict=True))
    return sum((p1 - p0) * (v0 + v1) / 2 for (p0, v0), (p1, v1) in itertools.pairwise(pairs))


def _interpolate(points: Sequence[tuple[float, float]], x: float) -> float:
    if x <= points[0][0]:
        return points[0][1]
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return points[-1][1]


@dataclass(frozen=True)
class Capacity:
    """The contents of `capacity.json`."""

    predict: dict[float, QuantileTable]
    """By cache rate."""
    health: QuantileTable
    cold_start_s: float
    """Process start -> first answer (the median of the measured starts)."""
    raw: Mapping[str, Any]

    @classmethod
    def load(cls, path: Path) -> Capacity:
        raw = json.loads(path.read_text())
        predict = {
            float(rate): QuantileTable([_level(lv) for lv in levels])
            for rate, levels in raw["predict"].items()
        }
        health = QuantileTable([_level(lv) for lv in raw["health"]])
        cold = float(raw["cold_start"]["first_prediction_s"]["median"])
        return cls(predict, health, cold, raw)

    def service_times(self, cache_rate: float, model: str = "serial") -> MeasuredServiceTimes:
        return MeasuredServiceTimes(self, cache_rate, serial=model == "serial")

    def saturation_rps(self, cache_rate: float) -> float:
        """Highest measured throughput of one process at `cache_rate` (interpolated)."""
        points = sorted(
            (rate, max(lv.requests_per_s for lv in t.levels)) for rate, t in self.predict.items()
        )
        return _interpolate(points, cache_rate)


def _level(raw: Mapping[str, Any]) -> Level:
    quantiles = {float(key[1:]) / 100: float(ms) for key, ms in raw["latency_ms"].items()}
    return Level(int(raw["concurrency"]), float(raw["requests_per_s"]), quantiles)


class MeasuredServiceTimes:
    """Service times of a pod at a cache rate, drawn from `Capacity`'s tables.

    Serial (the default, `model="serial"`): the process is one event loop, so a request's
    own processing time is drawn from the distribution at concurrency 1, shortened by the
    throughput gained at the current concurrency (X(1) / X(n): batching of syscalls and
    wake-ups); the queue in front of it is simulated. Otherwise (`model="draw"`) the whole
    time in the container is drawn from the closed-loop distribution at concurrency n.
    """

    def __init__(self, capacity: Capacity, cache_rate: float, serial: bool = True) -> None:
        self.serial = serial
        if not 0.0 <= cache_rate <= 1.0:
            raise ValueError(f"cache rate must be within 0..1, got {cache_rate}")
        rates = sorted(capacity.predict)
        low = max((r for r in rates if r <= cache_rate), default=rates[0])
        high = min((r for r in rates if r >= cache_rate), default=rates[-1])
        self.low, self.high = capacity.predict[low], capacity.predict[high]
        self.high_share = 0.0 if high == low else (cache_rate - low) / (high - low)
        self.health = capacity.health

    def sample(self, route: str, concurrency: int, rng: random.Random) -> float:
        if route == HEALTH:
            table = self.health
        else:
            table = self.high if rng.random() < self.high_share else self.low
        if not self.serial:
            return table.sample(concurrency, rng.random())
        return table.sample(1, rng.random()) * table.speedup(concurrency)


class ExponentialServiceTimes:
    """Exponential service times independent of concurrency (M/M/1 checks)."""

    serial = False

    def __init__(self, mean_s: float) -> None:
        self.mean_s = mean_s

    def sample(self, route: str, concurrency: int, rng: random.Random) -> float:
        return -self.mean_s * math.log(1.0 - rng.random())


class ConstantServiceTimes:
    """One service time for every request (M/D/1 checks)."""

    serial = False

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def sample(self, route: str, concurrency: int, rng: random.Random) -> float:
        return self.seconds
