"""The planner's queueing against closed forms, and its reading of InferenceService YAML.

One pod that can run one request at a time (containerConcurrency 1), fixed at one replica,
with the activator in the path (target-burst-capacity -1) holding the queue: Poisson
arrivals and exponential (M/M/1) or constant (M/D/1) service times must give the mean
waiting times queueing theory gives, within 5%.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.paths import REPO
from planner.capacity import ConstantServiceTimes, ExponentialServiceTimes, ServiceTimes
from planner.isvc import read_manifest
from planner.knative import AutoscalerConfig, DeciderSpec, Revision
from planner.profiles import OpenProfile, parse_profile
from planner.sim import OK, Setup, simulate

SERVICE_S = 0.001
MU = 1 / SERVICE_S
SECONDS = 120.0


def mean_wait_s(service_times: ServiceTimes, arrival_rate: float, seed: int) -> float:
    revision = Revision(
        container_concurrency=1,
        timeout_s=1e9,
        min_scale=1,
        max_scale=1,
        target_burst_capacity=-1,
    )
    setup = Setup(
        spec=DeciderSpec.resolve(revision, AutoscalerConfig()),
        container_concurrency=1,
        timeout_s=1e9,
        service_times=service_times,
        pod_start_s=1.0,
        start_pods=1,
        seed=seed,
        cooldown_s=0.0,
    )
    profile = OpenProfile("const", ((0.0, arrival_rate), (SECONDS, arrival_rate)))
    result = simulate(setup, profile)
    assert set(result.outcomes.outcome) == {OK}
    assert max(row["pods"] for row in result.timeline) == 1
    return float(np.mean(result.outcomes.latency)) - SERVICE_S


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_mm1_mean_wait(rho: float) -> None:
    lam = rho * MU
    expected = rho / (MU - lam)
    got = mean_wait_s(ExponentialServiceTimes(SERVICE_S), lam, seed=3)
    assert got == pytest.approx(expected, rel=0.05)


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_md1_mean_wait(rho: float) -> None:
    lam = rho * MU
    expected = rho / (2 * MU * (1 - rho))
    got = mean_wait_s(ConstantServiceTimes(SERVICE_S), lam, seed=3)
    assert got == pytest.approx(expected, rel=0.05)


def test_manifest_settings_read_as_kserve_maps_them() -> None:
    revision = read_manifest(REPO / "deploy" / "base" / "inferenceservice.yaml").revision
    assert revision.metric == "concurrency"
    assert revision.container_concurrency > 0
    assert revision.target is not None and revision.target <= revision.container_concurrency
    assert revision.timeout_s == 30


def test_kserve_defaults_and_annotations(tmp_path: Path) -> None:
    path = tmp_path / "isvc.yaml"
    path.write_text(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\n---\n"
        "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\n"
        "metadata:\n  name: m\n  annotations:\n"
        '    autoscaling.knative.dev/panic-threshold-percentage: "300"\n'
        "spec:\n  predictor:\n    scaleTarget: 20\n    containerConcurrency: 10\n"
        "    annotations:\n"
        '      autoscaling.knative.dev/window: "1m30s"\n'
        '      autoscaling.knative.dev/target-utilization-percentage: "50"\n'
    )
    revision = read_manifest(path).revision
    assert revision.min_scale == 1  # KServe's default minReplicas
    spec = DeciderSpec.resolve(revision, AutoscalerConfig())
    assert spec.total_value == 10  # the target is capped at containerConcurrency
    assert spec.target_value == 5  # x 50% utilization
    assert spec.stable_window_s == 90 and spec.panic_window_s == 9
    assert spec.panic_threshold == 3
    assert spec.target_burst_capacity == 211  # config-autoscaler's default


def test_config_autoscaler_overrides(tmp_path: Path) -> None:
    from planner.isvc import read_config_autoscaler

    path = tmp_path / "cm.yaml"
    path.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config-autoscaler}\n"
        'data:\n  stable-window: "30s"\n  enable-scale-to-zero: "false"\n'
        '  max-scale-up-rate: "2"\n'
    )
    config = read_config_autoscaler(path)
    assert config.stable_window_s == 30
    assert config.enable_scale_to_zero is False
    assert config.max_scale_up_rate == 2
    assert config.container_concurrency_target_percentage == 70


def test_profiles() -> None:
    ramp = parse_profile("original-open")
    assert isinstance(ramp, OpenProfile)
    assert ramp.rate(30) == pytest.approx(415) and ramp.rate(100) == 830
    assert ramp.duration_s == 360 and ramp.plateau_start_s == 60
    points = parse_profile("10:100,20:100,30:0")
    assert isinstance(points, OpenProfile)
    assert points.rate(5) == 50 and points.rate(15) == 100 and points.rate(25) == 50
    with pytest.raises(ValueError):
        parse_profile("20:1,10:2")
