"""The planner's port of Knative's autoscaler against knative/serving's own test cases.

Ported from knative/serving (commit 98e5ef90) `pkg/autoscaler/scaling/autoscaler_test.go`
and `pkg/autoscaler/aggregation/bucketing_test.go`: same inputs, same expected answers.
Their helper `newTestAutoscaler(target, tbc, metrics)` builds a spec with TotalValue =
target / 0.75, panic threshold 2, max scale up/down rates 10, a 60 s stable window, one
ready pod; `expectedEBC` is theirs, and excess burst capacity is compared within ±1 as
their `approxEquateInt32` does.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from planner.knative import (
    INVALID,
    Autoscaler,
    DeciderSpec,
    ScaleResult,
    TimedBuckets,
)

STABLE_WINDOW = 60.0
TARGET_UTILIZATION = 0.75
TICK = 2.0
NOW = 1_000_000.0


def spec(target: float, tbc: float, **changes: float | bool) -> DeciderSpec:
    base = DeciderSpec(
        target_value=target,
        total_value=target / TARGET_UTILIZATION,
        target_burst_capacity=tbc,
        panic_threshold=2.0,
        stable_window_s=STABLE_WINDOW,
        panic_window_s=6.0,
        max_scale_up_rate=10.0,
        max_scale_down_rate=10.0,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def expected_ebc(total: float, tbc: float, concurrency: float, pods: float) -> int:
    return math.floor(total / TARGET_UTILIZATION * pods - tbc - concurrency)


def expect(
    scaler: Autoscaler,
    now: float,
    stable: float,
    panic: float,
    pods: int,
    want: int,
    ebc: int | None = None,
) -> None:
    got = scaler.scale(now, stable, panic, pods)
    assert got.valid
    assert got.desired_pod_count == want
    if ebc is not None:
        assert abs(got.excess_burst_capacity - ebc) <= 1


def delay_spec(**changes: float | bool) -> DeciderSpec:
    """The spec of the TestAutoscalerScaleDownDelay* tests."""
    return spec(10, 0, panic_threshold=100, scale_down_delay_s=300.0, **changes)


def test_scale_down_delay_simple_and_gradual() -> None:
    """TestAutoscalerScaleDownDelay, subtests "simple" and "gradual"."""
    a = Autoscaler(delay_spec(), ready_pods=0)
    t0 = 0.0
    expect(a, t0 + 2, 40, 40, 0, 4)
    expect(a, t0 + 300, 0, 0, 0, 4)  # five minutes at lower concurrency: not yet
    expect(a, t0 + 302, 0, 0, 0, 0)
    expect(a, t0 + 540, 40, 40, 0, 4)  # gradual
    expect(a, t0 + 600, 30, 30, 0, 4)  # 4 still dominates
    expect(a, t0 + 660, 0, 0, 0, 4)
    expect(a, t0 + 840, 0, 0, 0, 3)  # the 4 scrolls out, the 3 stays
    expect(a, t0 + 900, 0, 0, 0, 0)


def test_scale_down_delay_not_reachable() -> None:
    """TestAutoscalerScaleDownDelayNotReachable: no delay once the revision is unreachable."""
    a = Autoscaler(delay_spec(), ready_pods=0)
    expect(a, 2, 40, 40, 0, 4)
    expect(a, 60, 0, 0, 0, 4)
    a.spec = delay_spec(reachable=False)
    expect(a, 2, 0, 0, 0, 0)


def test_scale_down_delay_zero() -> None:
    """TestAutoscalerScaleDownDelayZero: without a delay, scale down at once."""
    a = Autoscaler(spec(10, 0, panic_threshold=100), ready_pods=0)
    expect(a, NOW, 40, 40, 0, 4)
    expect(a, NOW + 0.5, 20, 20, 0, 2)


def test_no_data_no_autoscale() -> None:
    """TestAutoscalerNoDataNoAutoscale: no metrics, no valid decision."""
    assert Autoscaler(spec(10, 100), 1).scale(NOW, None, None, 1) == INVALID


def test_stable_mode_increase_with_concurrency_default() -> None:
    """TestAutoscalerStableModeIncreaseWithConcurrencyDefault."""
    a = Autoscaler(spec(10, 101), 1)
    expect(a, NOW, 50, 10, 1, 5, expected_ebc(10, 101, 10, 1))
    expect(a, NOW, 100, 10, 1, 10, expected_ebc(10, 101, 10, 1))


def test_unpanic_after_slow_increase() -> None:
    """TestAutoscalerUnpanicAfterSlowIncrease: panic ends a stable window after it began."""
    a = Autoscaler(spec(1, 98), 1)
    start = NOW
    expect(a, start, 11, 25, 10, 25, expected_ebc(1, 98, 25, 10))
    assert a.panic_time == start
    tm = start + STABLE_WINDOW / 2
    expect(a, tm, 30, 41, 40, 41, expected_ebc(1, 98, 41, 40))
    assert a.panic_time == start
    tm += STABLE_WINDOW / 2 + TICK
    expect(a, tm, 50, 56, 55, 50, expected_ebc(1, 98, 56, 55))
    assert a.panic_time is None


def test_extend_panic_window() -> None:
    """TestAutoscalerExtendPanicWindow: a surge still above the threshold extends panic."""
    a = Autoscaler(spec(1, 98), 1)
    expect(a, NOW, 11, 25, 10, 25, expected_ebc(1, 98, 25, 10))
    tm = NOW + STABLE_WINDOW / 2
    expect(a, tm, 30, 80, 40, 80, expected_ebc(1, 98, 80, 40))
    assert a.panic_time == tm


def test_stable_mode_decrease() -> None:
    """TestAutoscalerStableModeDecrease."""
    a = Autoscaler(spec(10, 98), 1)
    expect(a, NOW, 100, 100, 8, 10, expected_ebc(10, 98, 100, 8))
    expect(a, NOW, 50, 50, 8, 5, expected_ebc(10, 98, 50, 8))


def test_stable_mode_no_traffic_scale_to_zero() -> None:
    """TestAutoscalerStableModeNoTrafficScaleToZero."""
    a = Autoscaler(spec(10, 75), 1)
    expect(a, NOW, 1, 0, 1, 1, expected_ebc(10, 75, 0, 1))
    expect(a, NOW, 0, 0, 1, 0, expected_ebc(10, 75, 0, 1))


def test_activation_scale() -> None:
    """TestAutoscalerActivationScale: from zero, at least activation-scale pods."""
    a = Autoscaler(spec(10, 75, activation_scale=2), 1)
    expect(a, NOW, 0, 0, 1, 0, expected_ebc(10, 75, 0, 1))
    expect(a, NOW, 1, 0, 1, 2, expected_ebc(10, 75, 0, 1))


def test_panic_mode_exponential_track_and_stabilize() -> None:
    """TestAutoscalerPanicModeExponentialTrackAndStabilize."""
    a = Autoscaler(spec(1, 101), 1)
    expect(a, NOW, 6, 6, 1, 6, expected_ebc(1, 101, 6, 1))
    tm = NOW
    expect(a, tm, 36, 36, 6, 36, expected_ebc(1, 101, 36, 6))
    assert a.panic_time == tm
    tm += 1
    expect(a, tm, 216, 216, 36, 216, expected_ebc(1, 101, 216, 36))
    assert a.panic_time == tm
    expect(a, tm, 1296, 1296, 216, 1296, expected_ebc(1, 101, 1296, 216))
    tm += 1
    expect(a, tm, 1296, 1296, 1296, 1296, expected_ebc(1, 101, 1296, 1296))


# TestAutoscalerScale's table: (label, target, tbc, stable, panic, base scale, prep, want, ebc)
SCALE_TABLE = [
    ("AutoscalerNoDataAtZeroNoAutoscale", 10, 100, 0, 0, 1, {}, 0, expected_ebc(10, 100, 0, 1)),
    ("AutoscalerStableModeUnlimitedTBC", 181, -1, 21, 26, 1, {}, 1, -1),
    ("Autoscaler0TBC", 10, 0, 50, 49, 1, {}, 5, 0),
    ("AutoscalerStableModeNoChange", 10, 100, 50, 50, 1, {}, 5, expected_ebc(10, 100, 50, 1)),
    ("AutoscalerPanicStableLargerThanPanic", 1, 100, 50, 30, 5, {"panic": True}, 50,
     expected_ebc(1, 100, 30, 5)),
    ("AutoscalerPanicStableLessThanPanic", 1, 100, 20, 30, 5, {"panic": True}, 30,
     expected_ebc(1, 100, 30, 5)),
    ("AutoscalerStableModeNoChangeAlreadyScaled", 10, 100, 50, 50, 5, {}, 5,
     expected_ebc(10, 100, 50, 5)),
    ("AutoscalerStableModeIncreaseWithSmallScaleUpRate", 1, 1982, 3, 3.1, 2,
     {"max_scale_up_rate": 1.1}, 3, expected_ebc(1, 1982, 3.1, 2)),
    ("AutoscalerStableModeDecreaseWithSmallScaleDownRate", 10, 1982, 1, 1, 100,
     {"max_scale_down_rate": 1.1}, 90, expected_ebc(10, 1982, 1, 100)),
    ("AutoscalerStableModeDecreaseNonReachable", 10, 1982, 1, 1, 100,
     {"max_scale_down_rate": 1.1, "reachable": False}, 1, expected_ebc(10, 1982, 1, 100)),
    ("AutoscalerPanicModeDoublePodCount", 10, 84, 50, 100, 1, {}, 10,
     expected_ebc(10, 84, 100, 1)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("target", "tbc", "stable", "panic", "pods", "prep", "want", "ebc"),
    [row[1:] for row in SCALE_TABLE],
    ids=[row[0] for row in SCALE_TABLE],
)
def test_autoscaler_scale_table(
    target: float,
    tbc: float,
    stable: float,
    panic: float,
    pods: int,
    prep: dict[str, float | bool],
    want: int,
    ebc: int,
) -> None:
    """TestAutoscalerScale (the table, case names as ids)."""
    changes = {k: v for k, v in prep.items() if k != "panic"}
    a = Autoscaler(spec(target, tbc, **changes), 1)
    if prep.get("panic"):
        a.panic_time, a.max_panic_pods = NOW - 5, 5
    expect(a, NOW, stable, panic, pods, want, ebc)


def test_panic_then_unpanic_scale_down() -> None:
    """TestAutoscalerPanicThenUnPanicScaleDown: no scale-down until panic ends."""
    a = Autoscaler(spec(10, 93), 1)
    expect(a, NOW, 100, 100, 1, 10, expected_ebc(10, 93, 100, 1))
    panic_time = NOW + 1
    expect(a, panic_time, 100, 1000, 10, 100, expected_ebc(10, 93, 1000, 10))
    expect(a, panic_time + 30, 1, 1, 10, 100, expected_ebc(10, 93, 1, 10))
    expect(a, panic_time + 61, 1, 1, 10, 1, expected_ebc(10, 93, 1, 10))


def test_rate_limit_scale_up_and_down() -> None:
    """TestAutoscalerRateLimitScaleUp and TestAutoscalerRateLimitScaleDown."""
    up = Autoscaler(spec(10, 61), 1)
    expect(up, NOW, 1000, 1001, 1, 10, expected_ebc(10, 61, 1001, 1))
    expect(up, NOW, 1000, 1001, 10, 100, expected_ebc(10, 61, 1001, 10))
    down = Autoscaler(spec(10, 61), 1)
    expect(down, NOW, 1, 1, 100, 10, expected_ebc(10, 61, 1, 100))
    expect(down, NOW, 1, 1, 10, 1, expected_ebc(10, 61, 1, 10))


def test_one_pod_as_minimum_if_no_endpoints() -> None:
    """TestAutoscalerUseOnePodAsMinimumIfEndpointsNotFound: rate limits count 0 pods as 1."""
    a = Autoscaler(spec(10, 81), 1)
    expect(a, NOW, 1000, 888, 0, 10, expected_ebc(10, 81, 888, 0))


def test_update_target() -> None:
    """TestAutoscalerUpdateTarget: a new spec takes effect at the next decision."""
    a = Autoscaler(spec(10, 77), 1)
    expect(a, NOW, 100, 101, 1, 10, expected_ebc(10, 77, 101, 1))
    a.spec = spec(1, 71)
    expect(a, NOW, 100, 101, 10, 100, expected_ebc(1, 71, 101, 10))


def test_start_in_panic_mode() -> None:
    """TestStartInPanicMode: a new autoscaler over more than one pod starts panicking."""
    for pods in (0, 1):
        a = Autoscaler(spec(100, 11, panic_threshold=220), pods)
        assert a.panic_time is None and a.max_panic_pods == pods
    a = Autoscaler(spec(100, 11, panic_threshold=220), 2)
    assert a.panic_time is not None and a.max_panic_pods == 2


def test_timed_buckets_window_average() -> None:
    """bucketing_test.go TestTimedFloat64BucketsWindowAverage (granularity 1 s)."""
    now = 1000.25  # Go's time.Now() has a fraction; buckets truncate it
    b = TimedBuckets(5.0)
    b.record(now, 1)
    assert b.window_average(now) == 1.0
    for i in range(1, 5):
        b.record(now + i, i + 1)
    assert b.window_average(now + 4) == 15 / 5
    assert b.window_average(now + 3.6) == 15 / 5
    assert b.window_average(now + 6) == (15 - 1 - 2) / (5 - 2)
    assert b.window_average(now + 10) == 0.0
    b.record(now + 6, 91)
    assert b.window_average(now + 6) == (15 - 1 - 2 + 91) / 5
    now += 60
    b.record(now, 1984)
    assert b.window_average(now) == 1984.0
    b.record(now - 3, 4)
    assert b.window_average(now) == (4 + 1984) / 4
    now += 1
    b.record(now, 5)
    assert b.window_average(now) == (4 + 1984 + 5) / 5
    b.record(now - 3, 10)
    assert b.window_average(now) == (4 + 10 + 1984 + 5) / 5
    b.record(now - 6, 10)  # too early: ignored
    b.record(now - 5, 10)  # on the bound: ignored
    assert b.window_average(now) == (4 + 10 + 1984 + 5) / 5
    b.record(now + 5, 10)  # a whole window without data: start over
    assert b.window_average(now + 5) == 10.0


def test_descending_record() -> None:
    """bucketing_test.go TestDescendingRecord."""
    b = TimedBuckets(5.0)
    for i in range(8, -1, -1):
        b.record(500.5 + i, 5)
    assert b.window_average(505.5) == 5.0


def test_unlimited_tbc_keeps_the_activator() -> None:
    """target-burst-capacity -1: excess burst capacity is always -1 (activator in path)."""
    result = Autoscaler(spec(10, -1), 1).scale(NOW, 5, 5, 3)
    assert result == ScaleResult(1, -1)
