"""Discrete-event simulation of one Knative revision serving a traffic profile.

What is modelled, each as knative/serving implements it (see planner/knative.py):
- Requests arrive at the ingress. With the activator in the path (no ready pod, the
  revision scaled to zero or being scaled from it, or excess burst capacity < 0) they wait
  in the activator's queue (10,000 deep) until a ready pod has a free slot
  (`containerConcurrency`; unlimited when 0), picked round-robin (cc > 3), first-available
  (cc <= 3) or best of two random pods (cc = 0) as pkg/activator/net/lb_policy.go does.
  Otherwise the Kubernetes service sends each to a random ready pod, whose queue-proxy
  runs at most cc at a time and queues 10 x cc more; beyond that it answers 503.
- A request that starts while n run in its container costs a service time drawn from
  the measured capacity at concurrency n (planner/capacity.py); by default the
  container serves one at a time in arrival order (one event loop). A request still
  unanswered `timeout` seconds after it arrived is answered 504 (timed out).
- Every second the revision's concurrency (requests in the activator, the queue-proxies
  and the containers, averaged over the second) goes into 1 s buckets; every 2 s the
  ported `Autoscaler.scale` decides from the stable and panic window averages. The first
  request at scale zero is reported at once and triggers a decision (the activator's
  report and the multiscaler's Poke).
- The decision is bounded by min/max scale; a decision of zero first puts the activator
  in the path, and pods go only after the scale-to-zero grace period (or the pod
  retention period, whichever is longer). New pods serve after the measured cold start
  plus `pod_start_s` (scheduling, image pull); removed pods take no new requests and
  finish what they hold.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from planner.capacity import PREDICT, ServiceTimes
from planner.knative import (
    ACTIVATOR_QUEUE_DEPTH,
    BUCKET_S,
    QUEUE_PROXY_DEPTH_FACTOR,
    TICK_INTERVAL_S,
    Autoscaler,
    DeciderSpec,
    ScaleResult,
    TimedBuckets,
    apply_bounds,
)
from planner.profiles import ClosedProfile, OpenProfile, Profile

OK: Final = 0
FAILED: Final = 1
TIMED_OUT: Final = 2

_ARRIVAL: Final = 0
_COMPLETE: Final = 1
_POD_READY: Final = 2
_SECOND: Final = 3
_VU_SEND: Final = 4


@dataclass(frozen=True)
class Setup:
    """Everything one run needs besides the traffic."""

    spec: DeciderSpec
    container_concurrency: int
    timeout_s: float
    service_times: ServiceTimes
    pod_start_s: float
    """Pod created -> serving: the measured cold start plus scheduling and image pull."""
    start_pods: int
    """Ready pods at 0 s, with an idle history (the revision has served nothing lately)."""
    seed: int = 1
    cooldown_s: float = 600.0
    """Seconds simulated after the traffic ends (scale-down and its pod-seconds)."""


@dataclass(slots=True)
class Request:
    route: str
    arrived: float
    deadline: float
    vu: int
    via_activator: bool = False


@dataclass(slots=True, eq=False)
class Pod:
    index: int
    created: float
    ready: bool = False
    terminating: bool = False
    gone: float | None = None
    in_flight: int = 0
    busy_until: float = 0.0
    queue: deque[Request] = field(default_factory=deque)


@dataclass
class Outcomes:
    """One row per request: where it came from and what became of it."""

    route: list[str] = field(default_factory=list)
    arrived: list[float] = field(default_factory=list)
    finished: list[float] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    outcome: list[int] = field(default_factory=list)

    def add(self, request: Request, now: float, outcome: int) -> None:
        self.route.append(request.route)
        self.arrived.append(request.arrived)
        self.finished.append(now)
        self.latency.append(now - request.arrived)
        self.outcome.append(outcome)

    def arrays(self) -> dict[str, np.ndarray[Any, Any]]:
        return {
            "predict": np.array([r == PREDICT for r in self.route], dtype=bool),
            "arrived": np.array(self.arrived),
            "finished": np.array(self.finished),
            "latency": np.array(self.latency),
            "outcome": np.array(self.outcome, dtype=np.int8),
        }


@dataclass
class Result:
    setup: Setup
    profile: Profile
    outcomes: Outcomes
    timeline: list[dict[str, Any]]
    pods: list[Pod]
    end_s: float

    def pod_seconds(self, until: float | None = None) -> float:
        end = self.end_s if until is None else until
        return sum(max(0.0, min(p.gone or end, end) - min(p.created, end)) for p in self.pods)


class Simulation:
    def __init__(self, setup: Setup, profile: Profile) -> None:
        self.setup = setup
        self.profile = profile
        self.spec = setup.spec
        self.cc = setup.container_concurrency
        self.rng = random.Random(setup.seed)
        self.arrival_rng = random.Random(setup.seed * 7919 + 1)
        self.events: list[tuple[float, int, int, Any]] = []
        self.seq = 0
        self.now = 0.0
        self.pods: list[Pod] = []
        self.ready: list[Pod] = []
        self.activator: deque[Request] = deque()
        self.proxy = True
        self.round_robin = 0
        self.in_system = 0
        self.area = 0.0
        self.area_since = 0.0
        self.activator_seen = False
        self.inactive_since: float | None = None
        self.want = setup.start_pods
        self.stable = TimedBuckets(self.spec.stable_window_s)
        self.panic = TimedBuckets(self.spec.panic_window_s)
        self.autoscaler = Autoscaler(self.spec, ready_pods=0, now=0.0)
        self.last_result: ScaleResult | None = None
        self.outcomes = Outcomes()
        self.timeline: list[dict[str, Any]] = []
        self.second = {"arrivals": 0, "ok": 0, "failed": 0, "timed_out": 0}
        self._vu_step: dict[int, int] = {}
        for _ in range(setup.start_pods):
            pod = Pod(len(self.pods), created=0.0, ready=True)
            self.pods.append(pod)
            self.ready.append(pod)
        self._idle_history()

    # -- the event loop -------------------------------------------------------------------

    def _push(self, at: float, kind: int, payload: Any = None) -> None:
        self.seq += 1
        heapq.heappush(self.events, (at, self.seq, kind, payload))

    def run(self) -> Result:
        profile = self.profile
        if isinstance(profile, OpenProfile):
            self._next_open_arrival(0.0)
        else:
            for k in range(profile.vus):
                self._push(profile.vu_start(k) + profile.client_rtt_s / 2, _VU_SEND, k)
        self._push(1.0, _SECOND)
        self.end = profile.duration_s + self.setup.cooldown_s
        handlers: dict[int, Callable[[Any], None]] = {
            _ARRIVAL: self._on_open_arrival,
            _VU_SEND: self._on_vu_send,
            _COMPLETE: self._on_complete,
            _POD_READY: self._on_pod_ready,
            _SECOND: self._on_second,
        }
        while self.events:
            at, _, kind, payload = heapq.heappop(self.events)
            if at > self.end:
                break
            self.area += self.in_system * (at - self.now)
            self.now = at
            handlers[kind](payload)
        for pod in self.pods:
            if pod.gone is None and pod.terminating and pod.in_flight == 0:
                pod.gone = self.end
        return Result(self.setup, profile, self.outcomes, self.timeline, self.pods, self.end)

    # -- traffic ------------------------------------------------------------------------

    def _next_open_arrival(self, after: float) -> None:
        profile = self.profile
        assert isinstance(profile, OpenProfile)
        peak = profile.max_rate
        if peak <= 0:
            return
        t = after
        while True:
            t += self.arrival_rng.expovariate(peak)
            if t >= profile.duration_s:
                return
            if self.arrival_rng.random() * peak < profile.rate(t):
                self._push(t, _ARRIVAL)
                return

    def _on_open_arrival(self, _: Any) -> None:
        self._arrive(Request(PREDICT, self.now, self.now + self.setup.timeout_s, -1))
        self._next_open_arrival(self.now)

    def _on_vu_send(self, payload: Any) -> None:
        profile = self.profile
        assert isinstance(profile, ClosedProfile)
        vu, step = (payload, 0) if isinstance(payload, int) else payload
        route = profile.routes[step % len(profile.routes)]
        request = Request(route, self.now, self.now + self.setup.timeout_s, vu)
        self._vu_step[vu] = step
        self._arrive(request)

    def _vu_answered(self, request: Request) -> None:
        profile = self.profile
        if request.vu < 0 or not isinstance(profile, ClosedProfile):
            return
        # The answer travels back (rtt/2); the VU sends at once; the request travels (rtt/2).
        if self.now + profile.client_rtt_s / 2 >= profile.duration_s:
            return
        step = self._vu_step.get(request.vu, 0) + 1
        self._push(self.now + profile.client_rtt_s, _VU_SEND, (request.vu, step))

    # -- the data path ------------------------------------------------------------------

    def _arrive(self, request: Request) -> None:
        self.second["arrivals"] += 1
        self.in_system += 1
        if self.proxy or not self.ready:
            if len(self.activator) >= ACTIVATOR_QUEUE_DEPTH:
                self._finish(request, FAILED)
                return
            request.via_activator = True
            self.activator.append(request)
            self.activator_seen = True
            if self._scale() == 0:
                self._poke()
            self._dispatch()
            return
        pod = self.ready[self.rng.randrange(len(self.ready))]
        if self.cc == 0 or pod.in_flight < self.cc:
            self._start(pod, request)
        elif len(pod.queue) < QUEUE_PROXY_DEPTH_FACTOR * self.cc:
            pod.queue.append(request)
        else:
            self._finish(request, FAILED)

    def _has_slot(self, pod: Pod) -> bool:
        return self.cc == 0 or pod.in_flight + len(pod.queue) < self.cc

    def _pick(self) -> Pod | None:
        ready = self.ready
        if self.cc == 0:
            if len(ready) == 1:
                return ready[0]
            a, b = self.rng.sample(ready, 2)
            return a if a.in_flight <= b.in_flight else b
        if self.cc <= 3:
            return next((p for p in ready if self._has_slot(p)), None)
        n = len(ready)
        if self.round_robin >= n:
            self.round_robin = 0
        for i in range(n):
            pod = ready[(self.round_robin + i) % n]
            if self._has_slot(pod):
                self.round_robin = (self.round_robin + i) % n + 1
                return pod
        return None

    def _dispatch(self) -> None:
        while self.activator and self.ready:
            pod = self._pick()
            if pod is None:
                return
            request = self.activator.popleft()
            if request.deadline <= self.now:
                self._finish(request, TIMED_OUT, at=request.deadline)
                continue
            self._start(pod, request)

    def _start(self, pod: Pod, request: Request) -> None:
        pod.in_flight += 1
        service = self.setup.service_times
        seconds = service.sample(request.route, pod.in_flight, self.rng)
        if service.serial:  # one event loop: requests take their turn
            pod.busy_until = max(self.now, pod.busy_until) + seconds
            self._push(pod.busy_until, _COMPLETE, (pod, request))
        else:
            self._push(self.now + seconds, _COMPLETE, (pod, request))

    def _on_complete(self, payload: tuple[Pod, Request]) -> None:
        pod, request = payload
        pod.in_flight -= 1
        if self.now > request.deadline:
            self._finish(request, TIMED_OUT, at=request.deadline)
        else:
            self._finish(request, OK)
        while pod.queue and (self.cc == 0 or pod.in_flight < self.cc):
            waiting = pod.queue.popleft()
            if waiting.deadline <= self.now:
                self._finish(waiting, TIMED_OUT, at=waiting.deadline)
                continue
            self._start(pod, waiting)
        if pod.terminating and pod.in_flight == 0 and not pod.queue:
            pod.gone = self.now
        if self.activator:
            self._dispatch()

    def _finish(self, request: Request, outcome: int, at: float | None = None) -> None:
        self.in_system -= 1
        self.outcomes.add(request, self.now if at is None else at, outcome)
        self.second[("ok", "failed", "timed_out")[outcome]] += 1
        self._vu_answered(request)

    def _expire(self) -> None:
        """Answer 504 to the queued requests whose timeout has passed (FIFO: the oldest)."""
        for queue in [self.activator, *(p.queue for p in self.pods if p.gone is None)]:
            while queue and queue[0].deadline <= self.now:
                self._finish(queue.popleft(), TIMED_OUT, at=self.now)

    # -- pods and the autoscaler ----------------------------------------------------------

    def _on_pod_ready(self, pod: Pod) -> None:
        if pod.terminating:
            return
        pod.ready = True
        self.ready.append(pod)
        self._dispatch()

    def _scale(self) -> int:
        return sum(1 for p in self.pods if p.gone is None and not p.terminating)

    def _set_scale(self, want: int) -> None:
        active = [p for p in self.pods if p.gone is None and not p.terminating]
        for _ in range(want - len(active)):
            pod = Pod(len(self.pods), created=self.now)
            self.pods.append(pod)
            self._push(self.now + self.setup.pod_start_s, _POD_READY, pod)
        if want < len(active):
            order = sorted(active, key=lambda p: (p.ready, p.in_flight + len(p.queue), -p.index))
            for pod in order[: len(active) - want]:
                pod.terminating = True
                if pod.ready:
                    self.ready.remove(pod)
                if pod.in_flight == 0 and not pod.queue:
                    pod.gone = self.now

    def _idle_history(self) -> None:
        """Idle pods reported zero concurrency for a stable window before the run."""
        if not self.pods:
            return
        window = int(self.spec.stable_window_s)
        for t in range(-window, 1):
            self.stable.record(float(t), 0.0)
            self.panic.record(float(t), 0.0)
            if t % int(TICK_INTERVAL_S) == 0:
                self.autoscaler.scale(float(t), 0.0, 0.0, len(self.ready))
        self._decide()

    def _poke(self) -> None:
        """The activator reports the first request at once; the multiscaler decides now."""
        self.stable.record(self.now, 1.0)
        self.panic.record(self.now, 1.0)
        self._decide()

    def _decide(self) -> None:
        now = self.now
        if self.stable.is_empty(now):
            return  # no data: the decider keeps its last answer
        result = self.autoscaler.scale(
            now, self.stable.window_average(now), self.panic.window_average(now), len(self.ready)
        )
        self.last_result = result
        if not result.valid:
            return
        spec = self.spec
        want = apply_bounds(spec.min_scale, spec.max_scale, result.desired_pod_count)
        if want == 0 and not spec.enable_scale_to_zero:
            want = 1
        if want == 0:
            if self.inactive_since is None:
                self.inactive_since = now
            hold = max(spec.scale_to_zero_grace_period_s, spec.scale_to_zero_pod_retention_period_s)
            if now - self.inactive_since < hold:
                want = self._scale()
                self.proxy = True
                self.want = 0
                self._set_scale(want)
                return
        else:
            self.inactive_since = None
        self.want = want
        self.proxy = want == 0 or result.excess_burst_capacity < 0
        self._set_scale(want)
        self._dispatch()

    def _on_second(self, _: Any) -> None:
        now = self.now
        average = self.area / BUCKET_S
        self.area = 0.0
        self._expire()
        if self.ready or self.activator_seen or average > 0:
            self.stable.record(now, average)
            self.panic.record(now, average)
        self.activator_seen = bool(self.activator)
        if int(now) % int(TICK_INTERVAL_S) == 0:
            self._decide()
        self.timeline.append(
            {
                "t": now,
                **self.second,
                "concurrency": average,
                "ready_pods": len(self.ready),
                "pods": sum(1 for p in self.pods if p.gone is None),
                "desired_pods": self.want,
                "panic": self.autoscaler.in_panic,
                "activator_in_path": self.proxy or not self.ready,
                "activator_queue": len(self.activator),
            }
        )
        self.second = dict.fromkeys(self.second, 0)
        if now + 1 <= self.end:
            self._push(now + 1.0, _SECOND)


def simulate(setup: Setup, profile: Profile) -> Result:
    return Simulation(setup, profile).run()


def quantiles_ms(latency: np.ndarray[Any, Any]) -> dict[str, float | None]:
    if latency.size == 0:
        return {"p50": None, "p90": None, "p95": None, "p99": None}
    values = np.percentile(latency, [50, 90, 95, 99]) * 1000
    return {f"p{p}": float(v) for p, v in zip((50, 90, 95, 99), values, strict=True)}


def mean_wait_s(result: Result, service_mean_s: float) -> float:
    """Mean time in queue of the answered requests (for the queueing checks)."""
    latency = np.array(result.outcomes.latency)
    return float(latency.mean() - service_mean_s) if latency.size else math.nan
