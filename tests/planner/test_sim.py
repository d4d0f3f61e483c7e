"""The simulated revision's life cycle: scale from zero, back to zero, closed-loop clients."""

from __future__ import annotations

import numpy as np
import pytest

from planner.capacity import HEALTH, PREDICT, ConstantServiceTimes
from planner.knative import AutoscalerConfig, DeciderSpec, Revision
from planner.profiles import ClosedProfile, OpenProfile
from planner.sim import FAILED, OK, Result, Setup, simulate

SERVICE_S = 0.002
POD_START_S = 4.0


def run(revision: Revision, profile: OpenProfile | ClosedProfile, **setup: float) -> Result:
    config = AutoscalerConfig()
    spec = DeciderSpec.resolve(revision, config)
    return simulate(
        Setup(
            spec=spec,
            container_concurrency=revision.container_concurrency,
            timeout_s=revision.timeout_s,
            service_times=ConstantServiceTimes(SERVICE_S),
            pod_start_s=POD_START_S,
            start_pods=int(setup.get("start_pods", spec.min_scale)),
            cooldown_s=setup.get("cooldown_s", 200.0),
        ),
        profile,
    )


def test_scale_from_zero_holds_requests_in_the_activator_then_scales_back_to_zero() -> None:
    revision = Revision(container_concurrency=10, min_scale=0, window_s=30.0)
    result = run(revision, OpenProfile("p", ((0.0, 20.0), (20.0, 20.0))))
    latency = np.array(result.outcomes.latency)
    arrived = np.array(result.outcomes.arrived)
    assert set(result.outcomes.outcome) == {OK}
    # The simulator's own clock (a discrete-event run with constant service times), never the
    # machine's: its answers are exact. The first request reaches the activator, which starts
    # a pod at once: it waits the whole pod start, then its service; requests arriving once
    # the pod is up wait for nothing.
    assert latency[0] == pytest.approx(POD_START_S + SERVICE_S, abs=1e-9)
    assert latency[arrived > POD_START_S + 1] == pytest.approx(SERVICE_S, abs=1e-9)
    timeline = result.timeline
    assert timeline[0]["activator_in_path"] and timeline[0]["ready_pods"] == 0
    # Traffic ends at 20 s: a stable window of zeros (30 s), then the 30 s grace period.
    assert timeline[45]["ready_pods"] == 1
    assert timeline[-1]["pods"] == 0
    gone = [row["t"] for row in timeline if row["pods"] == 0 and row["t"] > 20]
    assert 50 <= gone[0] <= 90


def test_queue_proxy_answers_503_beyond_ten_times_container_concurrency() -> None:
    """One pod, cc 1, no activator (tbc 0): more than 1 + 10 in flight are refused."""
    revision = Revision(container_concurrency=1, min_scale=1, max_scale=1, target_burst_capacity=0)
    result = run(revision, OpenProfile("burst", ((0.0, 2000.0), (2.0, 2000.0))), start_pods=1)
    outcomes = np.array(result.outcomes.outcome)
    assert (outcomes == FAILED).sum() > 0
    assert (outcomes == OK).sum() > 0.2 * len(outcomes)


def test_closed_loop_clients_follow_littles_law() -> None:
    """N VUs, each request paying the round trip: throughput = N / (rtt + response time)."""
    vus, rtt = 20, 0.05
    profile = ClosedProfile("closed", vus, ramp_s=2.0, hold_s=30.0, client_rtt_s=rtt)
    revision = Revision(container_concurrency=0, min_scale=1, target_burst_capacity=0)
    result = run(revision, profile, start_pods=1, cooldown_s=0.0)
    routes = np.array(result.outcomes.route)
    arrived = np.array(result.outcomes.arrived)
    held = arrived > 3.0
    rate = held.sum() / (30.0 - 1.0)
    mean_response = float(np.mean(np.array(result.outcomes.latency)[held]))
    assert rate == pytest.approx(vus / (rtt + mean_response), rel=0.03)
    # One /health then one /predict per iteration.
    assert abs((routes == HEALTH).sum() - (routes == PREDICT).sum()) <= vus
