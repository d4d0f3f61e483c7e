"""`python -m planner`: measure a real server (quick), then simulate and recommend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.server import REPO

# The first test here may train the session's model and then measures a real server: about a
# minute on a quiet 2-core machine, several when it is shared (the default 300 s is too short).
pytestmark = pytest.mark.timeout(900)


def autoscale(*args: str, timeout: float = 240) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "planner", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def capacity(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("autoscale") / "capacity.json"
    work = out.parent / "work"
    autoscale("measure", "--model_dir", str(model_dir), "--quick", "--seconds", "1",
              "--out", str(out), "--work_dir", str(work), timeout=600)  # fmt: skip
    return out


def test_measure_records_levels_cold_start_and_machine(capacity: Path) -> None:
    data = json.loads(capacity.read_text())
    assert set(data["predict"]) == {"0", "0.5", "1"}
    for levels in data["predict"].values():
        assert [level["concurrency"] for level in levels] == [1, 4, 16]
        for level in levels:
            assert level["errors"] == 0 and level["requests"] > 0
            quantiles = list(level["latency_ms"].values())
            assert quantiles == sorted(quantiles)
    assert data["health"] and data["health_path"].startswith("/")
    cold = data["cold_start"]
    assert 0 < cold["ready_s"]["median"] <= cold["first_prediction_s"]["median"]
    assert data["machine"]["cores"] and "measure" in data["command"]
    # The deployed configuration (Redis tier on), measured with the server on a CPU of its own.
    assert data["redis"].startswith("a private redis-server")
    expected = "pinned (taskset)" if len(os.sched_getaffinity(0)) >= 2 else "unpinned"
    assert data["cpus"].startswith(expected)


def test_simulate_writes_report_and_plot(capacity: Path, tmp_path: Path) -> None:
    out = tmp_path / "sim"
    text = autoscale("simulate", "--capacity", str(capacity), "--profile", "10:50,30:50",
                     "--cooldown", "30", "--out", str(out))  # fmt: skip
    assert "peak" in text
    report = json.loads((out / "report.json").read_text())
    summary = report["summary"]
    assert summary["requests"] > 500 and summary["failed"] == 0
    # The manifest scales from zero: the first requests wait for a pod to start.
    assert summary["peak_ms"]["p99"] > 1000 * report["pod_start_s"] / 2
    assert report["timeline"][0]["ready_pods"] == 0
    assert max(row["ready_pods"] for row in report["timeline"]) >= 1
    assert (out / "timeline.png").stat().st_size > 10_000
    assert (out / "report.md").read_text().startswith("# housing")


def test_recommend_finds_settings_within_the_slo(capacity: Path, tmp_path: Path) -> None:
    out = tmp_path / "rec"
    text = autoscale("recommend", "--capacity", str(capacity), "--profile", "10:100,40:100",
                     "--cooldown", "60", "--slo-p99-ms", "200", "--quick",
                     "--out", str(out))  # fmt: skip
    data = json.loads((out / "recommendation.json").read_text())
    assert not data["current"]["feasible"]  # scale from zero: seconds of wait
    assert data["recommended"]["feasible"]
    assert data["recommended"]["summary"]["peak_ms"]["p99"] <= 200
    assert data["recommended"]["settings"]["minReplicas"] != "0"
    assert "minReplicas" in text
