"""harness: CPU pinning and CPU time per request, against real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from harness.cpu import cheapest, measure_windows, tree_cpu_seconds
from harness.payloads import SAMPLE_PATH, load_json, sample_row, sample_rows, sample_values
from harness.pinning import CpuPlan, cpu_plan, pinned
from predictor.protocol.schema import FEATURES

AFFINITY = "import os; print(sorted(os.sched_getaffinity(0)))"


def test_the_sample_row_is_the_first_row_of_sample_json() -> None:
    rows = load_json(SAMPLE_PATH.name)
    assert sample_rows() == rows
    assert sample_row() == rows[0]
    assert sample_values() == [float(rows[0][name]) for name in FEATURES]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_a_pinned_command_runs_on_its_cpu_only() -> None:
    plan = cpu_plan()
    assert plan.pinned and plan.server != plan.others
    for cpus in (plan.server, plan.others):
        out = subprocess.run(
            pinned([sys.executable, "-c", AFFINITY], cpus), capture_output=True, text=True
        )
        assert out.stdout.strip() == str(list(cpus))
    assert "pinned (taskset)" in plan.describe()


def test_unpinned_is_a_labelled_option() -> None:
    plan = cpu_plan(pin=False)
    assert plan == CpuPlan(None, None)
    assert pinned(["true"], plan.server) == ["true"]
    assert plan.describe().startswith("unpinned")


def test_cpu_per_request_counts_the_server_tree_and_keeps_the_cheapest_window() -> None:
    """A parent that idles and a child that burns 0.6 s of CPU, then idles: the child's time
    counts as the server's, and the undisturbed window is the one kept."""
    burn = "import time\nend = time.process_time() + 0.6\nwhile time.process_time() < end: pass"
    child = f"subprocess.run([sys.executable, '-c', {burn + chr(10) + 'time.sleep(30)'!r}])"
    parent = subprocess.Popen(
        [sys.executable, "-c", f"import subprocess, sys\n{child}"], start_new_session=True
    )

    def window(n: int) -> int:
        time.sleep(2.0 if n == 0 else 0.01)
        return (n + 1) * 100  # "requests answered"

    try:
        windows = measure_windows(parent.pid, 2, window, lambda requests: requests)
        assert windows[0].server_cpu_seconds >= 0.5  # the child's burn, through the tree
        assert windows[0].cpu_us_per_request == pytest.approx(
            windows[0].server_cpu_seconds / 100 * 1e6
        )
        assert cheapest(windows) is windows[1]
        assert tree_cpu_seconds(parent.pid) >= windows[0].server_cpu_seconds
    finally:
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()
