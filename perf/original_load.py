"""`make original-load`: the original service's own k6 load test, replayed against one process.

    python -m perf.original_load --model_dir DIR            # 6 min x 5 rates x 2 modes: 1 hour
    python -m perf.original_load --model_dir DIR --quick    # a few seconds per run

Starts a private `redis-server` and `python -m predictor --redis_url ...`, then runs
`perf/original.js` (closed model: VUs ramp to 100 in 1 minute, hold 5 minutes; each
iteration `GET /health` then `POST /predict` of one row with no Content-Type) at the
original's cache rates 0, 0.5, 0.75, 0.999 and 1.0, in two modes:

* **as written** (`saturation`): k6 on the same machine, no think time, so 100 VUs load the
  one process as hard as they can: its capacity, not the original's conditions;
* **with the original's round trip** (`rtt`): each request waits `--rtt_ms` (50) on the
  client first, as the original's k6 on a laptop waited for a cloud cluster; this reaches
  about the original's request rate.

Writes `original-load-<stamp>.{json,md,png}` into `--out` (the ignored perf/results/ by
default; docs/results/ with `--curate`, and with `--update-docs` also the tables of the
`perf:original-load` section of docs/performance.md; both refused with --quick): client
side P50/P90/P95/P99 from k6 (every request, and `/predict` alone), server side from the
`/predict` histogram of `/metrics`, requests/s and failed checks, beside the original's
numbers (server side, Grafana, an autoscaled AKS cluster).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from harness.pinning import UNPINNED_HELP, CpuPlan, cpu_plan
from harness.promtext import percentiles_ms
from perf import report
from perf.loadgen import PERF_DIR, K6Result, k6_executable, run_k6, tool_version
from perf.plot import plot_percentiles
from perf.procs import (
    PREDICTOR_READY_PATH,
    Service,
    observe,
    private_redis,
    running,
    spawn_predictor,
)
from perf.sweep import CACHE_RATES, SERVER_HISTOGRAM

SCRIPT: Final = PERF_DIR / "original.js"
PERCENTILES: Final = ("p50", "p90", "p95", "p99")
# The original's server-side P50/P90/P95/P99 (ms) by cache rate, from its issue.
ORIGINAL_SUSTAINED: Final = {
    0.0: (3.25, 6.66, 8.59, 13.9),
    0.5: (3.10, 4.88, 7.45, 9.72),
    0.75: (3.09, 4.96, 8.47, 25.5),
    0.999: (2.99, 4.72, 4.9, 8.15),
    1.0: (2.96, 4.73, 4.92, 8.75),
}
ORIGINAL_PEAK: Final = {
    0.0: (237, 448, 475, 496),
    0.5: (3.27, 7.64, 9.36, 22),
    0.75: (3.29, 10.2, 18.7, 31.2),
    0.999: (46.9, 95.3, 135, 227),
    1.0: (266, 483, 632, 926),
}
MODES: Final = {
    "saturation": "as written: k6 beside the server, no think time (capacity)",
    "rtt": "with the original's client round trip emulated",
}


@dataclass(frozen=True)
class Options:
    model_dir: Path
    modes: tuple[str, ...]
    cache_rates: tuple[float, ...]
    vus: int
    ramp: str
    hold: str
    rtt_ms: float
    quick: bool
    work_dir: Path
    out_dir: Path
    doc: Path | None
    """The page whose `perf:original-load` section this run's tables replace, if any."""
    command: str
    cpus: CpuPlan
    """Where the server, and k6 with Redis, run (`--unpinned`: anywhere)."""


@dataclass(frozen=True)
class Run:
    mode: str
    cache_rate: float
    k6: K6Result
    predict_ms: dict[str, float | None]
    """Client-side percentiles of `/predict` alone."""
    server_ms: dict[str, float | None]
    """Server-side percentiles of `/predict` (its histogram in /metrics) during the run."""
    checks_failed: int
    checks_total: int

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "client_ms": self.k6.latency_ms}


def _predict_percentiles(summary: Mapping[str, Any]) -> dict[str, float | None]:
    values = summary["metrics"].get("http_req_duration{endpoint:predict}", {}).get("values", {})
    return {p: values.get(f"p({p[1:]})") for p in PERCENTILES}


def _checks(summary: Mapping[str, Any]) -> tuple[int, int]:
    values = summary["metrics"].get("checks", {}).get("values", {})
    failed = int(values.get("fails", 0))
    return failed, failed + int(values.get("passes", 0))


def one_run(options: Options, service: Service, mode: str, cache_rate: float) -> Run:
    env = {
        "BASE_URL": service.base_url,
        "CACHE_RATE": repr(cache_rate),
        "VUS": str(options.vus),
        "RAMP": options.ramp,
        "HOLD": options.hold,
        "RTT_MS": f"{options.rtt_ms:g}" if mode == "rtt" else "0",
    }
    summary_path = options.work_dir / f"original-k6-{mode}-{cache_rate:g}.json"
    with observe(service) as seen:
        result = run_k6(env, summary_path, SCRIPT, cpus=options.cpus.others)
    print(f"[{mode}] {result.summary_line}", flush=True)
    summary = json.loads(summary_path.read_text())
    server_ms = percentiles_ms(seen.before, seen.after, SERVER_HISTOGRAM, {"route": "legacy"})
    failed, total = _checks(summary)
    return Run(mode, cache_rate, result, _predict_percentiles(summary), server_ms, failed, total)


def measure(options: Options) -> list[Run]:
    runs: list[Run] = []
    cpus = options.cpus
    with private_redis(options.work_dir, cpus.others) as redis_url:
        service = spawn_predictor(options.model_dir, ["--redis_url", redis_url], cpus=cpus.server)
        with running(service, PREDICTOR_READY_PATH):
            for mode in options.modes:
                runs += [one_run(options, service, mode, rate) for rate in options.cache_rates]
    return runs


def _ms(values: Mapping[str, float | None]) -> list[float | None]:
    return [values.get(p) for p in PERCENTILES]


def runs_table(runs: Sequence[Run]) -> str:
    header = ["mode", "cache rate", "requests", "req/s", "failed checks"]
    header += [f"client {p.upper()} ms" for p in PERCENTILES]
    header += ["/predict client P99 ms"] + [f"server {p.upper()} ms" for p in PERCENTILES]
    rows = [
        [
            run.mode,
            f"{run.cache_rate:g}",
            run.k6.requests,
            run.k6.requests_per_s,
            f"{run.checks_failed} of {run.checks_total}",
            *_ms(run.k6.latency_ms),
            run.predict_ms["p99"],
            *_ms(run.server_ms),
        ]
        for run in runs
    ]
    return report.table(header, rows)


def comparison_table(runs: Sequence[Run]) -> str:
    """Server-side P50/P90/P95/P99 here, per mode, beside the original's."""
    by_mode = {mode: {r.cache_rate: r for r in runs if r.mode == mode} for mode in MODES}
    header = ["cache rate", "original sustained", "original peak"]
    header += [f"here, {mode}" for mode in MODES if by_mode[mode]]

    def cell(values: Sequence[float | None]) -> str:
        return " / ".join("n/a" if v is None else f"{v:.3g}" for v in values)

    rows = []
    for rate in sorted({r.cache_rate for r in runs}):
        row = [
            f"{rate:g}",
            cell(ORIGINAL_SUSTAINED.get(rate, ())),
            cell(ORIGINAL_PEAK.get(rate, ())),
        ]
        row += [cell(_ms(by_mode[m][rate].server_ms)) for m in MODES if rate in by_mode[m]]
        rows.append(row)
    return report.table(header, rows)


def render(info: dict[str, Any], options: Options, runs: Sequence[Run]) -> str:
    shape = f"{options.vus} VUs, ramp {options.ramp}, hold {options.hold}"
    quick = (
        " **Quick run**: a smoke test of the tool, far shorter than the original's 6 minutes; "
        "its numbers are not comparable."
        if options.quick
        else ""
    )
    modes = "; ".join(f"`{m}`: {MODES[m]}" for m in options.modes)
    return "\n\n".join(
        [
            f"Machine: {report.machine_line(info)}. One server process with a private "
            f"redis-server; {info['k6']} on the same machine; {options.cpus.describe()}.",
            f"Script `perf/original.js` (the original's closed shape): {shape}; each "
            "iteration GET /health then POST /predict (one row, no Content-Type). "
            f"Modes: {modes} ({options.rtt_ms:g} ms before each request).{quick}",
            "Client side: k6, every request (/health and /predict); server side: the "
            "/predict histogram of /metrics (buckets interpolated).",
            runs_table(runs),
            "Server-side P50 / P90 / P95 / P99 ms, beside the original's (Grafana, server "
            "side, an autoscaled AKS cluster, 1 min ramp + 5 min hold):",
            comparison_table(runs),
        ]
    )


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = report.tool_parser(
        "original_load",
        "Replay the original service's k6 load test.",
        "k6 summaries, logs.",
        doc_section="original-load",
    )
    parser.add_argument("--modes", default="saturation,rtt", help="saturation and/or rtt.")
    parser.add_argument("--cache_rates", default=",".join(f"{r:g}" for r in CACHE_RATES))
    parser.add_argument("--vus", type=int, default=100, help="VUs held (the original: 100).")
    parser.add_argument("--ramp", default="1m", help="Ramp to --vus (k6 duration).")
    parser.add_argument("--hold", default="5m", help="Hold at --vus (k6 duration).")
    parser.add_argument("--rtt_ms", type=float, default=50.0, help="Client delay in rtt mode.")
    parser.add_argument("--quick", action="store_true", help="Smoke run: 2 s ramp, 4 s hold.")
    parser.add_argument("--unpinned", action="store_true", help=UNPINNED_HELP)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.quick:
        args.ramp, args.hold = "2s", "4s"
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    if not modes or not set(modes) <= set(MODES):
        parser.error(f"--modes must name some of {', '.join(MODES)}")
    report.resolve_outputs(parser, args)
    return Options(
        model_dir=args.model_dir,
        modes=modes,
        cache_rates=tuple(float(r) for r in args.cache_rates.split(",")),
        vus=args.vus,
        ramp=args.ramp,
        hold=args.hold,
        rtt_ms=args.rtt_ms,
        quick=args.quick,
        work_dir=args.work_dir,
        out_dir=args.out,
        doc=args.doc if args.update_docs else None,
        command=report.command_line("original_load", argv),
        cpus=cpu_plan(not args.unpinned),
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    report.make_dirs(options.out_dir, options.work_dir)
    started, info, stamp = time.monotonic(), report.machine(), f"original-load-{report.stamp()}"
    info["k6"] = tool_version(k6_executable(), "version")
    runs = measure(options)
    png = plot_percentiles(
        {MODES[m]: [r.as_dict() for r in runs if r.mode == m] for m in options.modes},
        "the original's k6 test (closed, 100 VUs): latency against cache rate",
        options.out_dir / f"{stamp}.png",
    )
    markdown = f"# The original's load test, replayed ({stamp})\n\n" + render(info, options, runs)
    markdown += f"\n\n![latency against cache rate]({png.name})"
    data = {
        "machine": info,
        "command": options.command,
        "cpus": options.cpus.describe(),
        "options": {k: str(v) for k, v in asdict(options).items()},
        "runs": [run.as_dict() for run in runs],
        "original": {"sustained": ORIGINAL_SUSTAINED, "peak": ORIGINAL_PEAK},
        "plot": png.name,
        "duration_s": time.monotonic() - started,
    }
    written = report.write_results(options.out_dir, stamp, data, markdown)
    if options.doc is not None:
        section = render(info, options, runs)
        section += f"\n\n![latency against cache rate]({report.relpath(png, options.doc)})"
        section += f"\n\nFull report: {report.link(written.md_path, options.doc)}."
        report.splice(options.doc, "original-load", section)
    print(markdown)
    print(f"\nwrote {written.md_path}, {written.json_path} and {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
