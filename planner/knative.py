"""Knative's pod autoscaler (KPA) decision code, ported from knative/serving.

Sources (knative/serving at 98e5ef90, read with `git show HEAD:<path>`):
- `config/core/configmaps/autoscaler.yaml`, `pkg/autoscaler/config/config.go`: the
  `config-autoscaler` defaults (`AutoscalerConfig`).
- `pkg/reconciler/autoscaling/resources/target.go` (`ResolveMetricTarget`),
  `.../kpa/resources/decider.go` (`MakeDecider`), `.../resources/metric.go` (`MakeMetric`:
  the panic window): `DeciderSpec.resolve`.
- `pkg/autoscaler/aggregation/bucketing.go` (`TimedFloat64Buckets`): `TimedBuckets`.
- `pkg/autoscaler/aggregation/max/window.go` (`TimeWindow`): `MaxTimeWindow`.
- `pkg/autoscaler/scaling/autoscaler.go` (`autoscaler.Scale`): `Autoscaler.scale`.

Times are seconds as floats; Go's `time.Time` arithmetic maps onto them one to one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Final, TypeVar

from harness.durations import parse_go_duration

T = TypeVar("T")

TICK_INTERVAL_S: Final = 2.0
"""The autoscaler decides every 2 s (`tickInterval` in multiscaler.go)."""
BUCKET_S: Final = 1.0
"""Metrics are aggregated in 1 s buckets (`config.BucketSize`)."""
SCRAPE_INTERVAL_S: Final = 1.0
TARGET_MIN: Final = 0.01
"""`autoscaling.TargetMin`: the smallest target a revision may have."""
QUEUE_PROXY_DEPTH_FACTOR: Final = 10
"""queue-proxy's breaker queues 10 x containerConcurrency requests (sharedmain/main.go)."""
ACTIVATOR_QUEUE_DEPTH: Final = 10_000
"""The activator's per-revision breaker queue (`breakerQueueDepth`, throttler.go)."""
KNATIVE_DEFAULT_TIMEOUT_S: Final = 300.0
"""`revision-timeout-seconds` of config-defaults."""
_PRECISION: Final = 6


def format_duration(seconds: float) -> str:
    """The shortest Go duration for `seconds` ("5m", "90s", "0s")."""
    if seconds and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


@dataclass(frozen=True)
class AutoscalerConfig:
    """The `config-autoscaler` ConfigMap: Knative's cluster-wide defaults."""

    container_concurrency_target_percentage: float = 70.0
    container_concurrency_target_default: float = 100.0
    requests_per_second_target_default: float = 200.0
    target_burst_capacity: float = 211.0
    stable_window_s: float = 60.0
    panic_window_percentage: float = 10.0
    panic_threshold_percentage: float = 200.0
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0
    enable_scale_to_zero: bool = True
    scale_to_zero_grace_period_s: float = 30.0
    scale_to_zero_pod_retention_period_s: float = 0.0
    activator_capacity: float = 100.0
    initial_scale: int = 1
    allow_zero_initial_scale: bool = False
    min_scale: int = 0
    max_scale: int = 0
    scale_down_delay_s: float = 0.0

    @classmethod
    def from_data(cls, data: Mapping[str, str]) -> AutoscalerConfig:
        """The config from a ConfigMap's `data` (keys as Knative spells them)."""
        values: dict[str, object] = {}
        for field in fields(cls):
            key = field.name.removesuffix("_s").replace("_", "-")
            if key not in data:
                continue
            raw = str(data[key])
            if field.name.endswith("_s"):
                values[field.name] = parse_go_duration(raw)
            elif field.type == "bool":
                values[field.name] = raw.strip().lower() == "true"
            elif field.type == "int":
                values[field.name] = int(raw)
            else:
                values[field.name] = float(raw)
        return replace(cls(), **values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Revision:
    """What a revision's spec and `autoscaling.knative.dev/*` annotations set (None: unset)."""

    metric: str = "concurrency"
    container_concurrency: int = 0
    timeout_s: float = KNATIVE_DEFAULT_TIMEOUT_S
    target: float | None = None
    target_utilization_percentage: float | None = None
    min_scale: int | None = None
    max_scale: int | None = None
    initial_scale: int | None = None
    window_s: float | None = None
    panic_window_percentage: float | None = None
    panic_threshold_percentage: float | None = None
    target_burst_capacity: float | None = None
    scale_down_delay_s: float | None = None
    activation_scale: int | None = None
    scale_to_zero_pod_retention_period_s: float | None = None


@dataclass(frozen=True)
class DeciderSpec:
    """`scaling.DeciderSpec`, with the windows and scale bounds the KPA reconciler adds."""

    target_value: float
    total_value: float
    target_burst_capacity: float
    panic_threshold: float
    stable_window_s: float
    panic_window_s: float
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0
    scale_down_delay_s: float = 0.0
    initial_scale: int = 1
    activation_scale: int = 0
    reachable: bool = True
    min_scale: int = 0
    max_scale: int = 0
    enable_scale_to_zero: bool = True
    scale_to_zero_grace_period_s: float = 30.0
    scale_to_zero_pod_retention_period_s: float = 0.0

    @classmethod
    def resolve(cls, revision: Revision, config: AutoscalerConfig) -> DeciderSpec:
        """`MakeDecider` + `ResolveMetricTarget` + `MakeMetric` + the scale bounds."""
        if revision.metric == "rps":
            total = config.requests_per_second_target_default
        else:
            total = float(revision.container_concurrency)
            if total == 0:
                total = config.container_concurrency_target_default
        utilization = config.container_concurrency_target_percentage / 100
        if revision.target is not None:
            total = revision.target
            if revision.metric == "concurrency" and revision.container_concurrency != 0:
                total = min(revision.target, float(revision.container_concurrency))
        if revision.target_utilization_percentage is not None:
            utilization = revision.target_utilization_percentage / 100
        target = max(TARGET_MIN, total * utilization)

        stable_window = _pick(revision.window_s, config.stable_window_s)
        panic_percentage = _pick(revision.panic_window_percentage, config.panic_window_percentage)
        panic_window = max(BUCKET_S, float(round(stable_window * panic_percentage / 100)))
        initial_scale = config.initial_scale
        if revision.initial_scale is not None and (
            revision.initial_scale != 0 or config.allow_zero_initial_scale
        ):
            initial_scale = revision.initial_scale
        return cls(
            target_value=target,
            total_value=total,
            target_burst_capacity=_pick(
                revision.target_burst_capacity, config.target_burst_capacity
            ),
            panic_threshold=_pick(
                revision.panic_threshold_percentage, config.panic_threshold_percentage
            )
            / 100,
            stable_window_s=stable_window,
            panic_window_s=panic_window,
            max_scale_up_rate=config.max_scale_up_rate,
            max_scale_down_rate=config.max_scale_down_rate,
            scale_down_delay_s=_pick(revision.scale_down_delay_s, config.scale_down_delay_s),
            initial_scale=initial_scale,
            activation_scale=revision.activation_scale or 0,
            min_scale=_pick(revision.min_scale, config.min_scale),
            max_scale=_pick(revision.max_scale, config.max_scale),
            enable_scale_to_zero=config.enable_scale_to_zero,
            scale_to_zero_grace_period_s=config.scale_to_zero_grace_period_s,
            scale_to_zero_pod_retention_period_s=_pick(
                revision.scale_to_zero_pod_retention_period_s,
                config.scale_to_zero_pod_retention_period_s,
            ),
        )


def _pick(revision_value: T | None, default: T) -> T:
    return default if revision_value is None else revision_value


class TimedBuckets:
    """`aggregation.TimedFloat64Buckets`: values summed per bucket, averaged over a window."""

    def __init__(self, window_s: float, granularity_s: float = BUCKET_S) -> None:
        self.window = window_s
        self.granularity = granularity_s
        self.buckets = [0.0] * math.ceil(window_s / granularity_s)
        self.first_write: float | None = None
        self.last_write = -math.inf
        self.window_total = 0.0

    def _truncate(self, now: float) -> float:
        return math.floor(now / self.granularity) * self.granularity

    def _index(self, now: float) -> int:
        return math.floor(now) // int(self.granularity)

    def is_empty(self, now: float) -> bool:
        return self._truncate(now) - self.last_write > self.window

    def record(self, now: float, value: float) -> None:
        bucket_time = self._truncate(now)
        write_index = self._index(now)
        if self.last_write != bucket_time:
            if bucket_time + self.window > self.last_write:
                if self.first_write is None or self.first_write > bucket_time:
                    self.first_write = bucket_time
                if bucket_time > self.last_write:
                    if bucket_time - self.last_write >= self.window:
                        self.first_write = bucket_time
                        self.buckets = [0.0] * len(self.buckets)
                        self.window_total = 0.0
                    else:
                        for i in range(self._index(self.last_write) + 1, write_index + 1):
                            slot = i % len(self.buckets)
                            self.window_total -= self.buckets[slot]
                            self.buckets[slot] = 0.0
                    self.last_write = bucket_time
            else:
                return  # older than the window
        self.buckets[write_index % len(self.buckets)] += value
        self.window_total += value

    def window_average(self, now: float) -> float:
        now = self._truncate(now)
        if self.first_write is None:
            return 0.0
        since_write = now - self.last_write
        valid = (self.last_write - self.first_write) // self.granularity + 1
        if since_write <= 0:
            return round(self.window_total / min(valid, len(self.buckets)), _PRECISION)
        if since_write < self.window:
            start, end = self._index(self.last_write), self._index(now)
            total = self.window_total
            for i in range(start + 1, end + 1):
                total -= self.buckets[i % len(self.buckets)]
            return round(total / min(valid, len(self.buckets) - (end - start)), _PRECISION)
        return 0.0


class MaxTimeWindow:
    """`max.TimeWindow`: the largest value recorded over the last `duration`."""

    def __init__(self, duration_s: float, granularity_s: float = TICK_INTERVAL_S) -> None:
        self.size = math.ceil(duration_s / granularity_s)
        self.granularity = granularity_s
        self.maxima: list[tuple[int, int]] = []  # (index, value), values decreasing

    def record(self, now: float, value: int) -> None:
        index = math.floor(now) // int(self.granularity)
        while self.maxima and value >= self.maxima[-1][1]:
            self.maxima.pop()
        while self.maxima and index - self.maxima[0][0] >= self.size:
            self.maxima.pop(0)
        if self.maxima and self.maxima[-1][0] == index:
            value = max(value, self.maxima.pop()[1])
        self.maxima.append((index, value))

    def current(self) -> int:
        return self.maxima[0][1]


@dataclass(frozen=True)
class ScaleResult:
    desired_pod_count: int
    excess_burst_capacity: int
    valid: bool = True


INVALID: Final = ScaleResult(0, 0, False)


class Autoscaler:
    """One revision's `autoscaler`: `scale` is a line-by-line port of `autoscaler.Scale`."""

    def __init__(self, spec: DeciderSpec, ready_pods: int, now: float = 0.0) -> None:
        self.spec = spec
        self.delay_window = (
            MaxTimeWindow(spec.scale_down_delay_s) if spec.scale_down_delay_s > 0 else None
        )
        # A new autoscaler over more than one pod starts in panic (newAutoscaler).
        self.panic_time: float | None = now if ready_pods > 1 else None
        self.max_panic_pods = ready_pods

    @property
    def in_panic(self) -> bool:
        return self.panic_time is not None

    def scale(
        self, now: float, stable: float | None, panic: float | None, ready_pods: int | None
    ) -> ScaleResult:
        """The decision at `now`; None for the metrics or pods means "no data" (invalid)."""
        spec = self.spec
        if ready_pods is None or stable is None or panic is None:
            return INVALID
        ready = max(1.0, float(ready_pods))
        max_scale_up = math.ceil(spec.max_scale_up_rate * ready)
        max_scale_down = math.floor(ready / spec.max_scale_down_rate) if spec.reachable else 0.0
        dspc = math.ceil(stable / spec.target_value)
        dppc = math.ceil(panic / spec.target_value)
        desired_stable = int(min(max(dspc, max_scale_down), max_scale_up))
        desired_panic = int(min(max(dppc, max_scale_down), max_scale_up))
        if spec.activation_scale > 1:
            if dspc > 0 and spec.activation_scale > desired_stable:
                desired_stable = spec.activation_scale
            if dppc > 0 and spec.activation_scale > desired_panic:
                desired_panic = spec.activation_scale

        over_threshold = dppc / ready >= spec.panic_threshold
        if over_threshold:
            self.panic_time = now  # enter panic, or extend it
        elif self.panic_time is not None and self.panic_time + spec.stable_window_s < now:
            self.panic_time = None
            self.max_panic_pods = 0

        desired = desired_stable
        if self.panic_time is not None:
            desired = max(desired, desired_panic)
            # No scale-down while panicking: only increases are applied.
            self.max_panic_pods = max(self.max_panic_pods, desired)
            desired = self.max_panic_pods

        if spec.reachable and self.delay_window is not None:
            self.delay_window.record(now, desired)
            desired = self.delay_window.current()

        if spec.target_burst_capacity == 0:
            excess = 0.0
        elif spec.target_burst_capacity > 0:
            capacity = (ready_pods or 0) * spec.total_value
            excess = math.floor(capacity - spec.target_burst_capacity - panic)
        else:
            excess = -1.0
        return ScaleResult(desired, int(excess))


def apply_bounds(min_scale: int, max_scale: int, desired: int) -> int:
    """`applyBounds` of kpa/scaler.go (max 0 means unbounded)."""
    if desired < min_scale:
        return min_scale
    if max_scale != 0 and desired > max_scale:
        return max_scale
    return desired
