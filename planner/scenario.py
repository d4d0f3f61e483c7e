"""One simulated scenario: a revision's settings, a capacity, a profile and a cache rate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from planner.capacity import Capacity
from planner.isvc import settings_to_set
from planner.knative import AutoscalerConfig, DeciderSpec, Revision
from planner.profiles import Profile
from planner.sim import Result, Setup, simulate

DEFAULT_POD_START_DELAY_S: Final = 2.0
"""Scheduling and container creation with the image already on the node; add the image
pull (tens of seconds for a fresh node) with --pod-start-delay."""


@dataclass(frozen=True)
class Scenario:
    revision: Revision
    config: AutoscalerConfig
    capacity: Capacity
    profile: Profile
    cache_rate: float
    seed: int = 1
    pod_start_delay_s: float = DEFAULT_POD_START_DELAY_S
    start_pods: int | None = None
    """Ready pods at the start; None: the revision's min scale (idle before the run)."""
    cooldown_s: float = 600.0
    service_model: str = "serial"
    """"serial" (one event loop, FIFO) or "draw" (see planner/capacity.py)."""

    def setup(self) -> Setup:
        spec = DeciderSpec.resolve(self.revision, self.config)
        start = spec.min_scale if self.start_pods is None else self.start_pods
        return Setup(
            spec=spec,
            container_concurrency=self.revision.container_concurrency,
            timeout_s=self.revision.timeout_s,
            service_times=self.capacity.service_times(self.cache_rate, self.service_model),
            pod_start_s=self.capacity.cold_start_s + self.pod_start_delay_s,
            start_pods=start,
            seed=self.seed,
            cooldown_s=self.cooldown_s,
        )

    def run(self) -> Result:
        return simulate(self.setup(), self.profile)

    def meta(self, isvc: Path | str, capacity: Path | str, title: str) -> dict[str, Any]:
        return {
            "title": title,
            "isvc": str(isvc),
            "capacity": str(capacity),
            "profile": self.profile.name,
            "cache_rate": self.cache_rate,
            "seed": self.seed,
            "pod_start_s": self.capacity.cold_start_s + self.pod_start_delay_s,
            "service_model": self.service_model,
            "settings": settings_to_set(self.revision),
            "decider": DeciderSpec.resolve(self.revision, self.config).__dict__,
        }
