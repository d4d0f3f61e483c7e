"""Server CPU time per request: the measure that survives a busy machine.

Requests per second on a shared machine say as much about the neighbours as about the
server; CPU time per request does not. The server's user + system time (its whole process
tree, from /proc/PID/stat) is read around a window of load and divided by the requests the
load generator saw answered. Several windows are run and the cheapest kept: a window
disturbed by another process only ever costs more. Pin the server to a CPU of its own
(harness.pinning) so the load generator does not share it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

Load = TypeVar("Load")


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` and its live descendants (from /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])))
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, (ppid, _) in stats.items() if ppid == parent]
        tree.update(children)
        frontier.extend(children)
    return sum(stats[p][1] for p in tree if p in stats) / ticks


@dataclass(frozen=True)
class CpuWindow(Generic[Load]):
    """One window of load: the generator's report, the requests answered, the server's CPU."""

    load: Load
    requests: int
    server_cpu_seconds: float

    @property
    def cpu_us_per_request(self) -> float:
        return self.server_cpu_seconds / max(1, self.requests) * 1e6


def measure_windows(
    pid: int,
    windows: int,
    run_window: Callable[[int], Load],
    requests_of: Callable[[Load], int],
    prepare: Callable[[int], object] | None = None,
) -> tuple[CpuWindow[Load], ...]:
    """Run `run_window(n)` for n in 0..windows-1, each between two reads of `pid`'s CPU;
    `prepare(n)`, if given, runs before window n, outside its CPU reads."""
    measured = []
    for n in range(windows):
        if prepare is not None:
            prepare(n)
        before = tree_cpu_seconds(pid)
        load = run_window(n)
        measured.append(CpuWindow(load, requests_of(load), tree_cpu_seconds(pid) - before))
    return tuple(measured)


def cheapest(windows: Sequence[CpuWindow[Load]]) -> CpuWindow[Load]:
    """The window with the least CPU per request: the least disturbed one."""
    return min(windows, key=lambda w: w.cpu_us_per_request)
