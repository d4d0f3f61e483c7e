"""`make soak`'s tool runs end to end, writes well-formed reports and sees its Redis outage;
never a timing."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from perf.loadgen import K6_SCRIPT, k6_executable
from perf.soak import PHASES
from tests.test_perf_tools import run_quick


def test_k6_runs_several_scenarios_at_once() -> None:
    variables = ["-e", "MODE=rate", "-e", "SCENARIOS=legacy:0.5:20,v2:0:10"]
    done = subprocess.run(
        [k6_executable(), "inspect", *variables, str(K6_SCRIPT)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    scenarios = json.loads(done.stdout)["scenarios"]
    assert {name: s["rate"] for name, s in scenarios.items()} == {"legacy_0": 20, "v2_1": 10}


def test_quick_soak_writes_the_report_and_sees_the_outage(model_dir: Path, tmp_path: Path) -> None:
    out = run_quick("soak", model_dir, tmp_path, timeout=120)

    (md,) = out.glob("soak-*.md")
    (data_path,) = out.glob("soak-*.json")
    data = json.loads(data_path.read_text())
    assert data["overall"]["requests"] == sum(s["requests"] for s in data["phases"].values())
    assert set(data["phases"]) == set(PHASES)
    assert data["rss"]["cold_mib"] > 0 and data["rss"]["end_mib"] > 0
    assert [t["target"].split(" ")[0] for t in data["targets"]][:2] == ["non-2xx", "RSS"]

    (fault,) = data["faults"]
    assert fault["restarted_s"] > fault["stopped_s"]
    moved = data["metric_deltas"]
    assert any(key.startswith("housing_redis_errors_total") for key in moved)
    assert any(key.startswith("housing_redis_skipped_total") for key in moved), "breaker open"
    assert any(row["window"] == "Redis down" for row in data["breaker"]), "the breaker opened"

    text = md.read_text()
    for heading in ("Targets", "Latency by window", "Redis outages", "Memory", "Timeline"):
        assert f"### {heading}" in text
    assert "| SIGTERM |" in text
