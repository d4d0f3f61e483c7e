"""`recommend`: the scaling settings with the fewest pod-seconds that keep the P99 in the SLO.

A setting is feasible when no /predict request fails or times out and the P99 of every
10-second window of the run, the ramp and any scale-from-zero included (the "peak" P99),
stays within the SLO. Among feasible settings the fewest pod-seconds (over the run and
the cooldown after it, so a long scale-down delay costs what it keeps) wins, then the
lower peak P99, each only when clearly so (see `Candidate.better_than`).

The search is a coordinate descent from the current manifest: each setting in turn is
tried at every value of its grid with the others held, the best is kept, and passes
repeat until none changes (at most `MAX_PASSES`). Every candidate runs with the same
seed, so two candidates see the same arrivals and service-time draws.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from planner.knative import Revision
from planner.report import summarize
from planner.scenario import Scenario

MAX_PASSES: Final = 3
POD_SECONDS_TOLERANCE: Final = 0.01
P99_TOLERANCE: Final = 0.10
GRID: Final[dict[str, tuple[Any, ...]]] = {
    "min_scale": (0, 1, 2),
    "container_concurrency": (0, 4, 8, 16, 32),
    "target": (1.0, 2.0, 4.0, 8.0, 16.0),
    "target_utilization_percentage": (50.0, 70.0, 90.0),
    "target_burst_capacity": (-1.0, 0.0, 64.0, 211.0),
    "window_s": (30.0, 60.0, 120.0),
    "scale_down_delay_s": (0.0, 60.0, 300.0),
}
QUICK_GRID: Final[dict[str, tuple[Any, ...]]] = {
    "min_scale": (0, 1),
    "target": (4.0, 8.0),
    "scale_down_delay_s": (0.0, 300.0),
}


@dataclass(frozen=True)
class Candidate:
    revision: Revision
    summary: dict[str, Any]
    feasible: bool
    exempt_cold_start: bool = False

    def better_than(self, other: Candidate, slo_ms: float) -> bool:
        """Clearly better: feasible over not; then fewer pod-seconds (by more than
        `POD_SECONDS_TOLERANCE`), then a lower peak P99 (by more than `P99_TOLERANCE`).
        A change within the noise of one seed never wins, so settings only move for a
        reason."""
        mine, theirs = self.summary, other.summary
        if self.feasible != other.feasible:
            return self.feasible
        kind = "peak_warm_ms" if self.exempt_cold_start else "peak_ms"
        peak = float(mine[kind]["p99"] or math.inf)
        other_peak = float(theirs[kind]["p99"] or math.inf)
        if not self.feasible:
            failures = int(mine["failed"] + mine["timed_out"])
            other_failures = int(theirs["failed"] + theirs["timed_out"])
            if failures != other_failures:
                return failures < other_failures
            return peak < other_peak * (1 - P99_TOLERANCE)
        pods, other_pods = float(mine["pod_seconds"]), float(theirs["pod_seconds"])
        if pods < other_pods * (1 - POD_SECONDS_TOLERANCE):
            return True
        if pods > other_pods * (1 + POD_SECONDS_TOLERANCE):
            return False
        return peak < other_peak * (1 - P99_TOLERANCE)


def feasible(summary: dict[str, Any], slo_ms: float, exempt_cold_start: bool = False) -> bool:
    peak = summary["peak_warm_ms" if exempt_cold_start else "peak_ms"]["p99"]
    return (
        summary["failed"] == 0 and summary["timed_out"] == 0 and peak is not None and peak <= slo_ms
    )


@dataclass
class Search:
    scenario: Scenario
    slo_ms: float
    grid: dict[str, tuple[Any, ...]]
    exempt_cold_start: bool = False
    """Judge the P99 once the first pod is ready (keep scale to zero and its cold start)."""
    log: Callable[[str], None] = print

    def __post_init__(self) -> None:
        self.seen: dict[Revision, Candidate] = {}

    def evaluate(self, revision: Revision) -> Candidate:
        if revision not in self.seen:
            summary = summarize(replace(self.scenario, revision=revision).run())
            ok = feasible(summary, self.slo_ms, self.exempt_cold_start)
            candidate = Candidate(revision, summary, ok, self.exempt_cold_start)
            self.seen[revision] = candidate
            self.log(describe(candidate))
        return self.seen[revision]

    def run(self) -> tuple[Candidate, Candidate]:
        """(the current manifest's result, the best found)."""
        current = self.evaluate(self.scenario.revision)
        best = current
        for _ in range(MAX_PASSES):
            changed = False
            for name, values in self.grid.items():
                for value in values:
                    trial = self.evaluate(_with(best.revision, name, value))
                    if trial.better_than(best, self.slo_ms):
                        best, changed = trial, True
            if not changed:
                break
        return current, best


def _with(revision: Revision, name: str, value: Any) -> Revision:
    if name == "target_utilization_percentage" and value == 70.0:
        value = None  # Knative's default: leave the annotation out
    changed = replace(revision, **{name: value})
    if name == "container_concurrency" and value and changed.target and changed.target > value:
        changed = replace(changed, target=float(value))
    return changed


def describe(candidate: Candidate) -> str:
    s, r = candidate.summary, candidate.revision
    peak, warm = s["peak_ms"]["p99"], s["peak_warm_ms"]["p99"] or float("nan")
    return (
        f"{'ok ' if candidate.feasible else 'no '} min={r.min_scale} cc={r.container_concurrency} "
        f"target={r.target:g} util={r.target_utilization_percentage or 70:g} "
        f"tbc={r.target_burst_capacity:g} window={r.window_s:g}s "
        f"delay={r.scale_down_delay_s:g}s -> peak P99 {peak:.1f} ms (warm {warm:.1f}), "
        f"failed {s['failed']}, timed out {s['timed_out']}, "
        f"{s['pod_seconds']:.0f} pod-s, max {s['max_pods']} pods"
    )


def changed_settings(current: Revision, best: Revision) -> list[str]:
    return [name for name in GRID if getattr(current, name) != getattr(best, name)]


def comparison_rows(pairs: Sequence[tuple[str, dict[str, Any]]]) -> list[list[Any]]:
    rows = []
    for label, s in pairs:
        rows.append(
            [
                label,
                *(s["peak_ms"][q] for q in ("p50", "p90", "p95", "p99")),
                s["peak_warm_ms"]["p99"],
                *(s["sustained_ms"][q] for q in ("p50", "p99")),
                s["failed"] + s["timed_out"],
                round(s["pod_seconds"]),
                s["max_pods"],
            ]
        )
    return rows


COMPARISON_HEADER: Final = (
    "settings",
    "peak P50",
    "peak P90",
    "peak P95",
    "peak P99",
    "peak P99 warm",
    "sustained P50",
    "sustained P99",
    "failed",
    "pod-seconds",
    "max pods",
)
