"""Cold start of `python -m predictor`: process start → ready → first prediction.

Knative scales from zero, so the first request after a start waits for all of it. Also
lists what the server imports at start (`PYTHONPROFILEIMPORTTIME`), the usual cause of a
slow start.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import httpx

from harness.payloads import path, unique_template
from perf.procs import PREDICTOR_READY_PATH, spawn_predictor

ROUTE: Final = "legacy"
STEADY_WARMUP: Final = 50
STEADY_REQUESTS: Final = 200
TOP_IMPORTS: Final = 12
HEADERS: Final = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class ColdStart:
    ready_s: float
    """Process spawned → readiness path answers 200."""
    first_prediction_s: float
    """Process spawned → the first prediction has been received."""
    first_request_ms: float
    steady_p50_ms: float
    """Median of sequential requests (new rows) once warm."""


def _timed_post(client: httpx.Client, url: str, body: str) -> float:
    start = time.perf_counter()
    response = client.post(url, content=body, headers=HEADERS)
    elapsed_ms = (time.perf_counter() - start) * 1000
    response.raise_for_status()
    return elapsed_ms


def measure_once(model_dir: Path, steady_requests: int = STEADY_REQUESTS) -> ColdStart:
    service = spawn_predictor(model_dir)
    template = unique_template(ROUTE)
    try:
        ready_s = service.wait_http_ready(PREDICTOR_READY_PATH)
        with httpx.Client(base_url=service.base_url, timeout=30.0) as client:
            first_ms = _timed_post(client, path(ROUTE), template.render(1))
            first_prediction_s = time.perf_counter() - service.started_at
            timings = [
                _timed_post(client, path(ROUTE), template.render(2 + i))
                for i in range(STEADY_WARMUP + steady_requests)
            ]
    finally:
        service.stop()
    steady = statistics.median(timings[STEADY_WARMUP:])
    return ColdStart(ready_s, first_prediction_s, first_ms, steady)


def summarize(starts: Sequence[ColdStart]) -> dict[str, Any]:
    """Median, min and max of each measure over the starts."""
    fields = list(asdict(starts[0]))
    summary: dict[str, Any] = {"starts": len(starts), "runs": [asdict(s) for s in starts]}
    for name in fields:
        values = [getattr(s, name) for s in starts]
        summary[name] = {
            "median": statistics.median(values),
            "min": min(values),
            "max": max(values),
        }
    return summary


ImportEntry = tuple[int, str, float]
"""(nesting level, root package, cumulative seconds) of one `-X importtime` line."""


def import_times(model_dir: Path) -> dict[str, Any]:
    """Start once with `PYTHONPROFILEIMPORTTIME=1`; import time per root package."""
    service = spawn_predictor(model_dir, env={"PYTHONPROFILEIMPORTTIME": "1"})
    try:
        service.wait_http_ready(PREDICTOR_READY_PATH)
    finally:
        service.stop()
    entries = import_entries(service.log_path.read_text(errors="replace"))
    ranked = sorted(per_package_seconds(entries).items(), key=lambda item: -item[1])
    return {
        "total_s": sum(seconds for level, _, seconds in entries if level == 0),
        "top": [{"package": name, "seconds": seconds} for name, seconds in ranked[:TOP_IMPORTS]],
    }


def import_entries(log: str) -> list[ImportEntry]:
    entries = []
    for line in log.splitlines():
        parts = line.split("|")
        if not line.startswith("import time:") or len(parts) != 3:
            continue
        if not parts[1].strip().isdigit():
            continue  # the header line
        name_column = parts[2][1:]  # one space after "|", then two per nesting level
        level = (len(name_column) - len(name_column.lstrip(" "))) // 2
        entries.append((level, name_column.strip().split(".")[0], int(parts[1]) / 1e6))
    return entries


def per_package_seconds(entries: Sequence[ImportEntry]) -> dict[str, float]:
    """Seconds of import time per root package, what it imports included.

    A package counts each time another package (or the top level) imports it, so nested
    packages appear both on their own and inside their importer's time.
    """
    per_package: dict[str, float] = defaultdict(float)
    roots_by_level: dict[int, str] = {}
    # Python prints a module after the modules it imported: read backwards, parents first.
    for level, root, seconds in reversed(entries):
        roots_by_level[level] = root
        if level == 0 or roots_by_level.get(level - 1) != root:
            per_package[root] += seconds
    return dict(per_package)
