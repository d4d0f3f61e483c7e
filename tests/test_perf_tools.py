"""The perf tooling works end to end and writes well-formed results; never a timing."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.payloads import fixed_body, unique_template
from harness.pinning import cpu_plan
from harness.promtext import parse, percentiles_ms, quantile
from harness.server import REPO
from harness.system_tools import require_tool
from perf import report
from perf.bench import TARGETS, Measurement, evaluate
from perf.coldstart import import_entries, per_package_seconds
from perf.loadgen import K6_SCRIPT, WrkResult, k6_executable
from perf.sweep import CACHE_RATES, search_max_rate
from predictor.protocol.schema import validate_instances, validate_objects

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_unique_bodies_are_valid_rows_that_differ_only_in_population() -> None:
    template = unique_template("legacy")
    rows = validate_objects(json.loads(template.render(7)) + json.loads(template.render(8)))
    fixed = validate_objects(json.loads(fixed_body("legacy")))[0]
    assert rows[0][4] == 7.0 and rows[1][4] == 8.0
    assert list(rows[0][:4]) == list(fixed[:4]) and list(rows[0][5:]) == list(fixed[5:])
    v1 = json.loads(unique_template("v1").render(9))["instances"]
    assert validate_instances(v1)[0][4] == 9.0


def test_histogram_percentiles_come_from_the_difference_of_two_scrapes() -> None:
    def scrape_text(counts: tuple[int, int, int]) -> str:
        lines = [
            f'h_seconds_bucket{{le="{le}",route="legacy"}} {n}'
            for le, n in zip(("0.001", "0.01", "+Inf"), counts, strict=True)
        ]
        return "# TYPE h_seconds histogram\n" + "\n".join(lines) + "\n"

    before = parse(scrape_text((5, 5, 5)))
    after = parse(scrape_text((5, 105, 105)))  # 100 new observations, all in (1 ms, 10 ms]
    result = percentiles_ms(before, after, "h_seconds", {"route": "legacy"})
    assert result["p50"] == pytest.approx(5.5)
    assert percentiles_ms(before, before, "h_seconds")["p99"] is None
    assert quantile([(0.01, 10.0), (float("inf"), 20.0)], 0.99) == 0.01


def _measured(key: str, requests_per_s: float, p99_ms: float) -> Measurement:
    target = next(t for t in TARGETS if t.key == key)
    load = WrkResult(1000, 10.0, requests_per_s, 1.0, 2.0, p99_ms, p99_ms, 0, 0.1)
    return Measurement(target, load, 1.0, None, None)


def test_targets_are_ratios_from_the_same_run() -> None:
    measurements = [
        _measured("raw-asgi", 20_000, 2),
        _measured("textbook-v1", 500, 60),
        _measured("mlserver-v2", 400, 50),
        _measured("noop-v1", 3000, 10),
        _measured("noop-v2", 2000, 12),
        _measured("predictor-legacy-miss", 5000, 40),  # 10x the best peer (textbook)
        _measured("predictor-legacy-hit", 9000, 3),  # 0.45x the ceiling
        _measured("predictor-v1-miss", 2600, 70),  # 5.2x, P99 worse than the peer's; 0.87x
        _measured("predictor-v2-miss", 1800, 20),  # 3.6x; 0.9x the no-op
    ]
    cold = {"ready_s": {"median": 1.2}}
    results = {check.name: check for check in evaluate(measurements, cold)}
    assert len(results) == 7
    by_start = {name.split(" vs ")[0].split(":")[0]: check for name, check in results.items()}
    assert by_start["this project, legacy /predict, 0% hits"].met
    v1 = by_start["this project, V1, 0% hits"]
    assert not v1.met and v1.shortfall == "P99 10.00 ms worse"
    assert by_start["this project, V2 REST, 0% hits"].shortfall == "28% short of 5x"
    ceiling = by_start["legacy /predict at 100% hits"]
    assert not ceiling.met and ceiling.profile_key == "predictor-legacy-hit"
    assert by_start["V2 at 0% hits"].met and not by_start["V1 at 0% hits"].met
    assert by_start["cold start"].met


def test_max_rate_search_doubles_then_bisects() -> None:
    probed: list[int] = []

    def sustains(rate: int) -> bool:
        probed.append(rate)
        return rate <= 3000

    assert search_max_rate(sustains, 830, 10) == 2905
    assert probed[:3] == [830, 1660, 3320]
    assert search_max_rate(lambda rate: False, 830, 3) is None


def test_import_times_count_each_package_where_another_imports_it() -> None:
    log = "\n".join(
        [
            "import time: self [us] | cumulative | imported package",
            "import time:       100 |        100 |     numpy.core",
            "import time:        50 |        150 |   numpy",
            "import time:        30 |        180 | sklearn",
            "import time:        20 |         20 | kserve",
        ]
    )
    seconds = per_package_seconds(import_entries(log))
    assert seconds == pytest.approx({"sklearn": 180e-6, "numpy": 150e-6, "kserve": 20e-6})


@pytest.mark.parametrize("mode", ["ramp", "rate"])
def test_k6_accepts_the_load_script(mode: str) -> None:
    # `k6 inspect` does not read the system environment: pass the variables with -e.
    variables = ["-e", f"MODE={mode}", "-e", "ROUTE=v2", "-e", "CACHE_RATE=0.5"]
    done = subprocess.run(
        [k6_executable(), "inspect", *variables, str(K6_SCRIPT)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    scenario = json.loads(done.stdout)["scenarios"]["load"]
    assert scenario["executor"] == {"ramp": "ramping-vus", "rate": "constant-arrival-rate"}[mode]


def test_hey_script_is_valid_bash() -> None:
    subprocess.run(["bash", "-n", str(REPO / "perf" / "hey.sh")], check=True)


def run_quick(tool: str, model_dir: Path, tmp_path: Path, timeout: float) -> Path:
    """Run `python -m perf.TOOL --quick` into tmp_path; return its results directory."""
    out = tmp_path / "results"
    command = [sys.executable, "-m", f"perf.{tool}", "--model_dir", str(model_dir), "--quick"]
    command += ["--out", str(out), "--work_dir", str(tmp_path / "work")]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def test_quick_sweep_writes_the_table_json_and_plot(model_dir: Path, tmp_path: Path) -> None:
    out = run_quick("sweep", model_dir, tmp_path, timeout=240)

    (md,) = out.glob("load-*.md")
    (data_path,) = out.glob("load-*.json")
    (png,) = out.glob("load-*.png")
    data = json.loads(data_path.read_text())
    assert data["levels"], "at least the original's rate is measured"
    for runs in data["levels"].values():
        assert [run["cache_rate"] for run in runs] == list(CACHE_RATES)
        for run in runs:
            assert set(run["client_ms"]) == {"p50", "p90", "p95", "p99"}
            assert set(run["server_ms"]) == {"p50", "p90", "p95", "p99"}
            assert run["k6"]["requests"] > 0
    text = md.read_text()
    # Each report says how the run was pinned (server alone on a CPU, where there are two).
    assert data["cpus"] == cpu_plan().describe() and data["cpus"] in text
    assert text.count("| cache rate | requests |") == len(data["levels"])
    assert f"]({png.name})" in text
    assert png.read_bytes().startswith(PNG_MAGIC)


@pytest.mark.parametrize("tool", ["bench", "sweep", "original_load"])
def test_load_tools_pin_the_server_by_default_and_unpin_on_request(
    tool: str, tmp_path: Path
) -> None:
    parse_options = importlib.import_module(f"perf.{tool}").parse_options
    base = ["--model_dir", str(tmp_path), "--work_dir", str(tmp_path / "work")]
    pinned, unpinned = parse_options(base).cpus, parse_options([*base, "--unpinned"]).cpus
    assert pinned == cpu_plan() and pinned.pinned == (len(os.sched_getaffinity(0)) >= 2)
    assert not unpinned.pinned and unpinned.describe().startswith("unpinned")


@pytest.mark.parametrize("tool", ["bench", "sweep", "soak", "original_load"])
def test_runs_write_to_the_ignored_results_dir_unless_kept(tool: str, tmp_path: Path) -> None:
    parse_options = importlib.import_module(f"perf.{tool}").parse_options
    base = ["--model_dir", str(tmp_path), "--work_dir", str(tmp_path / "work")]
    assert parse_options(base).out_dir == report.RESULTS
    assert parse_options([*base, "--curate"]).out_dir == report.CURATED
    ignored = ["git", "check-ignore", "-q"]
    assert subprocess.run([*ignored, "perf/results/x.md"], cwd=REPO).returncode == 0
    assert subprocess.run([*ignored, "docs/results/x.md"], cwd=REPO).returncode == 1
    if tool != "soak":
        kept = parse_options([*base, "--update-docs"])
        assert (kept.out_dir, kept.doc) == (report.CURATED, report.PERF_DOC)
        assert parse_options(base).doc is None
        with pytest.raises(SystemExit):  # the docs would link to a report outside docs/results
            parse_options([*base, "--update-docs", "--out", str(tmp_path)])


@pytest.mark.parametrize(
    ("tool", "flag"),
    [
        ("bench", "--update-docs"),
        ("sweep", "--update-docs"),
        ("soak", "--curate"),
        ("original_load", "--update-docs"),
    ],
)
def test_quick_runs_are_never_kept(
    tool: str, flag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parse_options = importlib.import_module(f"perf.{tool}").parse_options
    with pytest.raises(SystemExit) as exited:
        parse_options(["--model_dir", str(tmp_path), "--quick", flag])
    assert exited.value.code == 2
    assert f"{flag} is refused with --quick" in capsys.readouterr().err
    assert not (tmp_path / "work").exists()


def test_quick_original_load_writes_both_modes_beside_the_original(
    model_dir: Path, tmp_path: Path
) -> None:
    """`make original-load`, shrunk: one cache rate, a few VUs, both modes."""
    out = tmp_path / "results"
    command = [sys.executable, "-m", "perf.original_load", "--model_dir", str(model_dir)]
    command += ["--quick", "--vus", "4", "--ramp", "1s", "--hold", "2s", "--cache_rates", "1"]
    command += ["--out", str(out), "--work_dir", str(tmp_path / "work")]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (md,) = out.glob("original-load-*.md")
    (data_path,) = out.glob("original-load-*.json")
    (png,) = out.glob("original-load-*.png")
    data = json.loads(data_path.read_text())
    runs = data["runs"]
    assert data["cpus"] == cpu_plan().describe() and data["cpus"] in md.read_text()
    assert [(r["mode"], r["cache_rate"]) for r in runs] == [("saturation", 1.0), ("rtt", 1.0)]
    for run in runs:
        assert run["checks_failed"] == 0 and run["checks_total"] > 0
        assert run["server_ms"]["p50"] is not None
    # The emulated round trip (50 ms before each request) bounds every request's cycle.
    saturation, rtt = (run["k6"]["requests_per_s"] for run in runs)
    assert rtt < 4 * 1000 / 50 < saturation
    text = md.read_text()
    assert "Quick run" in text
    assert "| 1 | 2.96 / 4.73 / 4.92 / 8.75 | 266 / 483 / 632 / 926 |" in text
    assert png.read_bytes().startswith(PNG_MAGIC)


def test_quick_cpu_bench_measures_server_cpu_per_request_against_the_floor(
    model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "results"
    command = [sys.executable, "-m", "perf.cpu_bench", "--model_dir", str(model_dir), "--quick"]
    command += ["--windows", "2", "--targets", "floor,legacy-miss,v1-hit"]
    command += ["--out", str(out), "--work_dir", str(tmp_path / "work")]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    (data_path,) = out.glob("cpu-*.json")
    data = json.loads(data_path.read_text())
    rows = {m["key"]: m for m in data["measurements"]}
    assert list(rows) == ["floor", "legacy-miss", "v1-hit"]
    for row in rows.values():
        assert len(row["windows"]) == 2
        assert row["errors"] == 0
        assert row["cpu_us_per_request"] == min(w["cpu_us_per_request"] for w in row["windows"])
        assert row["cpu_us_per_request"] > 0
    # A model behind kserve costs more than a constant answer; the table says by how much.
    assert rows["legacy-miss"]["cpu_us_per_request"] > rows["floor"]["cpu_us_per_request"]
    assert "| x floor |" in (out / data_path.name.replace(".json", ".md")).read_text()


def test_quick_cpu_bench_measures_grpc_model_infer_beside_rest(
    model_dir: Path, tmp_path: Path
) -> None:
    require_tool("h2load", "for gRPC ModelInfer hits in make bench-cpu")
    out = tmp_path / "results"
    command = [sys.executable, "-m", "perf.cpu_bench", "--model_dir", str(model_dir), "--quick"]
    command += ["--windows", "1", "--targets", "v2-hit,grpc-miss,grpc-hit"]
    command += ["--out", str(out), "--work_dir", str(tmp_path / "work")]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    (data_path,) = out.glob("cpu-*.json")
    rows = {m["key"]: m for m in json.loads(data_path.read_text())["measurements"]}
    assert list(rows) == ["v2-hit", "grpc-miss", "grpc-hit"]
    for row in rows.values():
        assert row["errors"] == 0 and row["windows"][0]["requests"] > 0
        assert row["cpu_us_per_request"] > 0
