"""`make load`: the original's load-test table, measured with k6 against one process.

    .venv/bin/python -m perf.sweep --model_dir DIR [--duration 60] [--route legacy]
    .venv/bin/python -m perf.sweep --model_dir DIR --quick        # seconds per rate (the tests)
    .venv/bin/python -m perf.sweep --model_dir DIR --update-docs  # `make load-doc`

Starts a private `redis-server` and `python -m predictor --redis_url ...`, then runs
`perf/load.js` in the open model (k6 `constant-arrival-rate`) at each cache rate (0, 0.5,
0.75, 0.999, 1.0) at two load levels: the original's average rate (830 requests/s) and the
highest rate this machine sustains, found first by probing at cache rate 0 unless given
with `--max_rate`. "Sustains": k6 sends the rate (at most 1% dropped), no request fails,
and the P99 stays within `--slo_p99_ms`.

Writes `load-<stamp>.{json,md,png}` into `perf/results/` (ignored; `docs/results/` with
`--curate`): client-side P50/P90/P95/P99 per cache rate from k6, server-side percentiles
from the predictor's `/metrics` histogram, and the plot; with `--update-docs` (`make
load-doc`), also replaces the `perf:load` section of `docs/performance.md`.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from harness.payloads import MODEL_NAME, ROUTES
from harness.pinning import UNPINNED_HELP, CpuPlan, cpu_plan
from harness.promtext import percentiles_ms
from perf import report
from perf.loadgen import K6Result, k6_executable, run_k6, tool_version
from perf.plot import plot_percentiles
from perf.procs import (
    PREDICTOR_READY_PATH,
    Service,
    observe,
    private_redis,
    running,
    spawn_predictor,
)

CACHE_RATES: Final = (0.0, 0.5, 0.75, 0.999, 1.0)
ORIGINAL_RATE: Final = 830
SERVER_HISTOGRAM: Final = "housing_request_seconds"
# Each k6 run gets its own range of unique Population values, so no run's "unique" rows
# are already in the cache from an earlier run.
UNIQUE_RANGE: Final = 10**9
MAX_DROPPED_SHARE: Final = 0.01
ORIGINAL: Final = (
    "The original system (as its issue reports it): an autoscaled cluster, 200k-300k "
    "requests in 6 minutes (1-minute ramp, 5 minutes held, about 830 requests/s at peak), "
    "sustained P99 of 8-26 ms across these cache rates."
)


@dataclass(frozen=True)
class Options:
    model_dir: Path
    route: str
    duration_s: int
    rate: int
    max_rate: int | None
    probe_s: int
    max_probes: int
    slo_p99_ms: float
    cache_rates: tuple[float, ...]
    work_dir: Path
    out_dir: Path
    doc: Path | None
    """The page whose perf:load section to replace (`--update-docs`), or None."""
    command: str
    cpus: CpuPlan
    """Where the server, and k6 with Redis, run (`--unpinned`: anywhere)."""


@dataclass(frozen=True)
class Run:
    rate: int
    cache_rate: float
    k6: K6Result
    server_ms: dict[str, float | None]
    """P50/P90/P95/P99 of the server's request histogram during the run."""
    hit_ratio: float | None
    """Share of rows the server answered from a cache (its /metrics)."""
    server_cores: float
    full_gcs: int | None
    """The server's full garbage collections during the run (its /metrics)."""

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "client_ms": self.k6.latency_ms}


@dataclass(frozen=True)
class Probe:
    rate: int
    sustained: bool
    p99_ms: float | None
    dropped: int

    def describe(self) -> str:
        p99 = "n/a" if self.p99_ms is None else f"{self.p99_ms:.1f} ms"
        verdict = "sustained" if self.sustained else "not sustained"
        return f"{self.rate}/s {verdict} (P99 {p99}, {self.dropped} dropped)"


@dataclass
class Sweep:
    options: Options
    service: Service
    runs_started: int = 0
    probes: list[Probe] = field(default_factory=list)

    def k6(self, rate: int, cache_rate: float, seconds: int) -> Run:
        """One open-model k6 run, and what the server saw meanwhile."""
        self.runs_started += 1
        env = {
            "BASE_URL": self.service.base_url,
            "ROUTE": self.options.route,
            "MODEL_NAME": MODEL_NAME,
            "MODE": "rate",
            "RATE": str(rate),
            "DURATION": f"{seconds}s",
            "CACHE_RATE": repr(cache_rate),
            "UNIQUE_BASE": str(self.runs_started * UNIQUE_RANGE),
            "P99_MS": f"{self.options.slo_p99_ms:g}",
            "PRE_VUS": str(max(50, rate // 10)),
            "MAX_VUS": str(max(200, rate // 2)),
        }
        summary_path = self.options.work_dir / f"k6-{self.runs_started}.json"
        with observe(self.service) as seen:
            result = run_k6(env, summary_path, cpus=self.options.cpus.others)
        print(result.summary_line, flush=True)
        labels = {"route": self.options.route}
        server_ms = percentiles_ms(seen.before, seen.after, SERVER_HISTOGRAM, labels)
        return Run(rate, cache_rate, result, server_ms, seen.hit_ratio, seen.cores, seen.full_gcs)

    def sustains(self, rate: int) -> bool:
        result = self.k6(rate, 0.0, self.options.probe_s).k6
        p99 = result.latency_ms["p99"]
        sustained = (
            result.dropped_iterations <= MAX_DROPPED_SHARE * rate * self.options.probe_s
            and result.failed_rate == 0
            and p99 is not None
            and p99 <= self.options.slo_p99_ms
        )
        self.probes.append(Probe(rate, sustained, p99, result.dropped_iterations))
        return sustained

    def find_max_rate(self) -> int | None:
        """Double from the original's rate while sustained, then bisect; at most N probes."""
        return search_max_rate(self.sustains, self.options.rate, self.options.max_probes)

    def run_level(self, rate: int) -> list[Run]:
        return [
            self.k6(rate, cache_rate, self.options.duration_s)
            for cache_rate in self.options.cache_rates
        ]


def search_max_rate(sustains: Callable[[int], bool], start: int, max_probes: int) -> int | None:
    """The highest rate found sustained, doubling from `start` and then bisecting; None
    when no probed rate was sustained."""
    good: int | None = None
    bad: int | None = None
    rate = start
    for _ in range(max_probes):
        if sustains(rate):
            good = rate
        else:
            bad = rate
        if bad is None:
            rate *= 2
        elif good is None:
            rate = bad // 2
        elif bad - good <= max(50, good // 10):
            break
        else:
            rate = (good + bad) // 2
    return good


# -- report --------------------------------------------------------------------------------


def level_table(runs: Sequence[Run]) -> str:
    header = ["cache rate", "requests", "req/s", "P50 ms", "P90 ms", "P95 ms", "P99 ms"]
    header += ["server P50", "server P90", "server P95", "server P99", "hits (measured)"]
    header += ["dropped", "failed", "server CPU (cores)", "full GCs", "thresholds"]
    rows = [
        [
            f"{run.cache_rate:g}",
            run.k6.requests,
            run.k6.requests_per_s,
            *run.k6.latency_ms.values(),
            *run.server_ms.values(),
            "n/a" if run.hit_ratio is None else f"{100 * run.hit_ratio:.1f}%",
            run.k6.dropped_iterations,
            f"{100 * run.k6.failed_rate:.2f}%",
            run.server_cores,
            run.full_gcs,
            "ok" if run.k6.thresholds_ok else "crossed",
        ]
        for run in runs
    ]
    return report.table(header, rows)


def render(
    info: dict[str, Any], options: Options, levels: dict[str, list[Run]], notes: Sequence[str]
) -> str:
    parts = [
        f"Machine: {report.machine_line(info)}.",
        f"Command: `{options.command}`.",
        (
            f"{info['k6']}, open model (`constant-arrival-rate`), route `{options.route}`, "
            f"{options.duration_s} s per cache rate, one row per request; the predictor "
            f"with a private Redis as the shared cache tier; {options.cpus.describe()}. "
            "Client percentiles from k6; server percentiles from the "
            f"`{SERVER_HISTOGRAM}` histogram (interpolated within its buckets); "
            f"thresholds: P99 < {options.slo_p99_ms:g} ms, < 1% failed, < 1% dropped."
        ),
        *notes,
    ]
    for label, runs in levels.items():
        parts += [f"### {label}", level_table(runs)]
    parts.append(ORIGINAL)
    return "\n\n".join(parts)


# -- main ----------------------------------------------------------------------------------


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = report.tool_parser(
        "sweep",
        "k6 at the original's cache rates against one predictor process.",
        "Logs, temp.",
        doc_section="load",
    )
    parser.add_argument("--route", choices=ROUTES, default="legacy", help="Route to load.")
    parser.add_argument("--duration", type=int, default=60, help="Seconds per cache rate.")
    parser.add_argument("--rate", type=int, default=ORIGINAL_RATE, help="Requests/s.")
    parser.add_argument("--max_rate", type=int, help="Skip the search: the second level.")
    parser.add_argument("--probe_seconds", type=int, default=10, help="Seconds per probe.")
    parser.add_argument("--max_probes", type=int, default=8, help="Probes of the search.")
    parser.add_argument("--slo_p99_ms", type=float, default=25.0, help="P99 to sustain.")
    parser.add_argument("--quick", action="store_true", help="Smoke run: seconds per rate.")
    parser.add_argument("--unpinned", action="store_true", help=UNPINNED_HELP)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.probe_seconds, args.max_probes = 2, 1, 2
    report.resolve_outputs(parser, args)
    return Options(
        model_dir=args.model_dir,
        route=args.route,
        duration_s=args.duration,
        rate=args.rate,
        max_rate=args.max_rate,
        probe_s=args.probe_seconds,
        max_probes=args.max_probes,
        slo_p99_ms=args.slo_p99_ms,
        cache_rates=CACHE_RATES,
        work_dir=args.work_dir,
        out_dir=args.out,
        doc=args.doc if args.update_docs else None,
        command=report.command_line("sweep", argv),
        cpus=cpu_plan(not args.unpinned),
    )


@contextlib.contextmanager
def predictor_with_redis(options: Options) -> Iterator[Service]:
    cpus = options.cpus
    with private_redis(options.work_dir, cpus.others) as redis_url:
        service = spawn_predictor(options.model_dir, ["--redis_url", redis_url], cpus=cpus.server)
        with running(service, PREDICTOR_READY_PATH):
            yield service


def measure(options: Options) -> tuple[dict[str, list[Run]], list[Probe], list[str]]:
    levels: dict[str, list[Run]] = {}
    notes: list[str] = []
    with predictor_with_redis(options) as service:
        sweep = Sweep(options, service)
        sweep.k6(options.rate, 0.5, options.probe_s)  # warm-up, not reported
        levels[f"{options.rate} requests/s (the original's average)"] = sweep.run_level(
            options.rate
        )
        max_rate = options.max_rate or sweep.find_max_rate()
        if sweep.probes:
            probes = "; ".join(probe.describe() for probe in sweep.probes)
            notes.append(f"Probes at cache rate 0, {options.probe_s} s each: {probes}.")
        if max_rate is None:
            notes.append("No probed rate was sustained: only the original's rate is reported.")
        else:
            how = "given" if options.max_rate else "highest sustained, found by probing"
            levels[f"{max_rate} requests/s ({how})"] = sweep.run_level(max_rate)
    return levels, sweep.probes, notes


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    report.make_dirs(options.out_dir, options.work_dir)
    started, info, stamp = time.monotonic(), report.machine(), f"load-{report.stamp()}"
    info["k6"] = tool_version(k6_executable(), "version")
    levels, probes, notes = measure(options)
    png = plot_percentiles(
        {label: [run.as_dict() for run in runs] for label, runs in levels.items()},
        f"k6 open model, route {options.route}: latency against cache rate",
        options.out_dir / f"{stamp}.png",
    )
    markdown = f"# Load sweep {stamp}\n\n" + render(info, options, levels, notes)
    markdown += f"\n\n![latency against cache rate]({png.name})"
    data = {
        "machine": info,
        "command": options.command,
        "cpus": options.cpus.describe(),
        "options": {k: str(v) for k, v in asdict(options).items()},
        "levels": {label: [run.as_dict() for run in runs] for label, runs in levels.items()},
        "probes": [asdict(probe) for probe in probes],
        "notes": notes,
        "plot": png.name,
        "duration_s": time.monotonic() - started,
    }
    written = report.write_results(options.out_dir, stamp, data, markdown)
    if options.doc is not None:
        section = render(info, options, levels, notes)
        section += f"\n\n![latency against cache rate]({report.relpath(png, options.doc)})"
        section += f"\n\nFull report: {report.link(written.md_path, options.doc)}."
        report.splice(options.doc, "load", section)
    print(markdown)
    print(f"\nwrote {written.md_path}, {written.json_path} and {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
