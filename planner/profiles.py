"""Traffic profiles: open (requests/s over time, Poisson arrivals) or closed (k6 VUs).

original-open     ramp 0 -> 830 requests/s in 60 s, hold 300 s (the original's rate)
original-closed   k6's ramping-vus: 0 -> 100 VUs in 60 s, hold 300 s; each iteration
                  GET /health then POST /predict, each paying the client round trip
const:RPS:SECONDS RPS requests/s for SECONDS
T1:RPS1,T2:RPS2,...  RPSi requests/s at Ti seconds, linear in between, from 0 at 0 s
                  unless T1 is 0; the run ends at the last Ti
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass
from typing import Final

from planner.capacity import HEALTH, PREDICT

ORIGINAL_RATE: Final = 830.0
ORIGINAL_RAMP_S: Final = 60.0
ORIGINAL_HOLD_S: Final = 300.0
ORIGINAL_VUS: Final = 100


@dataclass(frozen=True)
class OpenProfile:
    name: str
    points: tuple[tuple[float, float], ...]
    """(seconds, requests/s), linear in between."""

    @property
    def duration_s(self) -> float:
        return self.points[-1][0]

    @property
    def plateau_start_s(self) -> float:
        """Where the last stretch of constant rate begins (the "sustained" part)."""
        start = self.points[-1][0]
        for (t0, r0), (_, r1) in zip(self.points[-2::-1], self.points[::-1], strict=False):
            if r0 != r1:
                break
            start = t0
        return start

    @property
    def max_rate(self) -> float:
        return max(rate for _, rate in self.points)

    def rate(self, t: float) -> float:
        times = [p[0] for p in self.points]
        if t < times[0] or t >= times[-1]:
            return 0.0
        i = bisect.bisect_right(times, t)
        (t0, r0), (t1, r1) = self.points[i - 1], self.points[i]
        return r0 + (r1 - r0) * (t - t0) / (t1 - t0)


@dataclass(frozen=True)
class ClosedProfile:
    name: str
    vus: int
    ramp_s: float
    hold_s: float
    client_rtt_s: float
    routes: tuple[str, ...] = (HEALTH, PREDICT)
    """The requests of one iteration, in order."""

    @property
    def duration_s(self) -> float:
        return self.ramp_s + self.hold_s

    @property
    def plateau_start_s(self) -> float:
        return self.ramp_s

    def vu_start(self, k: int) -> float:
        """When VU k (0-based) starts: k6 ramps the VU count linearly over the ramp."""
        return (k + 1) * self.ramp_s / self.vus


Profile = OpenProfile | ClosedProfile


def parse_profile(text: str, client_rtt_ms: float = 50.0) -> Profile:
    if text == "original-open":
        hold_end = ORIGINAL_RAMP_S + ORIGINAL_HOLD_S
        ramp = ((0.0, 0.0), (ORIGINAL_RAMP_S, ORIGINAL_RATE), (hold_end, ORIGINAL_RATE))
        return OpenProfile(text, ramp)
    if text == "original-closed":
        return ClosedProfile(
            text, ORIGINAL_VUS, ORIGINAL_RAMP_S, ORIGINAL_HOLD_S, client_rtt_ms / 1000
        )
    if text.startswith("const:"):
        _, rps, seconds = text.split(":")
        return OpenProfile(text, ((0.0, float(rps)), (float(seconds), float(rps))))
    try:
        parsed = [tuple(float(x) for x in part.split(":")) for part in text.split(",")]
    except ValueError as e:
        raise ValueError(f"unknown profile {text!r}") from e
    if any(len(p) != 2 for p in parsed):
        raise ValueError(f"breakpoints are T:RPS pairs, got {text!r}")
    points: list[tuple[float, float]] = [(p[0], p[1]) for p in parsed]
    if points[0][0] > 0:
        points.insert(0, (0.0, 0.0))
    if any(b[0] <= a[0] for a, b in itertools.pairwise(points)):
        raise ValueError(f"breakpoint times must increase, got {text!r}")
    return OpenProfile(text, tuple(points))
