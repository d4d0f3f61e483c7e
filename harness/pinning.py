"""CPU pinning for measurements: the server on one CPU, load generator and Redis on another.

A load run on a machine with two CPUs measures the machine's contention unless the server has
a CPU of its own: k6 or wrk and Redis then compete with it for the same cores. `cpu_plan`
splits the CPUs this process may use; `pinned` prefixes a command with `taskset`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass

UNPINNED_HELP = (
    "Let the server, the load generator and Redis share every CPU (the machine's contention "
    "is then part of the numbers). By default, with 2+ CPUs, the server runs on one and the "
    "load generator and Redis on another."
)


@dataclass(frozen=True)
class CpuPlan:
    """Which CPUs the server and the rest (load generator, Redis) run on; None: anywhere."""

    server: tuple[int, ...] | None
    others: tuple[int, ...] | None

    @property
    def pinned(self) -> bool:
        return self.server is not None

    def describe(self) -> str:
        """One line for a report: how the run was pinned, or that it was not."""
        if self.server is None or self.others is None:
            return f"unpinned: server and load generator share {os.cpu_count()} CPUs"
        return (
            f"pinned (taskset): server on CPU {_cpus(self.server)}, "
            f"load generator and Redis on CPU {_cpus(self.others)}"
        )


def _cpus(cpus: Sequence[int]) -> str:
    return ",".join(map(str, cpus))


def cpu_plan(pin: bool = True) -> CpuPlan:
    """The server on the first usable CPU and everything else on the second, when `pin` and
    this process may use two or more CPUs and `taskset` exists; otherwise unpinned."""
    usable = sorted(os.sched_getaffinity(0))
    if not pin or len(usable) < 2 or shutil.which("taskset") is None:
        return CpuPlan(None, None)
    return CpuPlan((usable[0],), (usable[1],))


def pinned(command: Sequence[str], cpus: Sequence[int] | None) -> list[str]:
    """`command` run on `cpus` (through taskset), or as it is when `cpus` is None."""
    if cpus is None:
        return list(command)
    return ["taskset", "-c", _cpus(cpus), *command]
