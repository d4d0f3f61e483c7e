"""`make bench`: this project against its peers, one load generator, one run, one machine.

    .venv/bin/python -m perf.bench --model_dir DIR [--seconds 12] [--connections 20]
    .venv/bin/python -m perf.bench --model_dir DIR --quick        # a smoke run, seconds each
    .venv/bin/python -m perf.bench --model_dir DIR --update-docs  # `make bench-doc`

Starts, one after the other, and loads with wrk (same connections, same bodies from
`harness/payloads.py`, one row per request):

* a raw ASGI app returning a constant (the ceiling),
* a KServe custom model as the KServe docs teach it (the textbook peer, V1),
* MLServer + mlserver-sklearn on the same `model.joblib` (V2; skipped, with the reason in
  the report, when it cannot be installed),
* a no-op KServe model served as this project serves (V1 and V2),
* this project: legacy `/predict`, V1 and V2, each at 0% and 100% cache hits.

Then the cold start of this project. Writes `bench-<stamp>.{json,md}` and a py-spy profile
of the server of every missed target into `perf/results/` (ignored; `docs/results/` with
`--curate`), and with `--update-docs` also replaces the `perf:bench` section of
`docs/performance.md` with the tables of this run.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import httpx

from harness.payloads import fixed_body, path, unique_template
from harness.pinning import UNPINNED_HELP, CpuPlan, cpu_plan
from perf import coldstart, mlserver, report
from perf.loadgen import Payload, WrkResult, require, run_wrk, tool_version
from perf.procs import (
    PREDICTOR_READY_PATH,
    Service,
    observe,
    running,
    spawn_predictor,
    spawn_python_module,
    spawn_raw_asgi,
)
from perf.profile import start_recording, summarize

# Unique rows of different targets must not meet in the cache: each target has its own
# range of Population values (perf/wrk.lua adds 1e9 per wrk thread, then a counter).
UNIQUE_RANGE: Final = 10**11
COLD_START_GOAL_S: Final = 1.5
PEER_SPEEDUP_GOAL: Final = 5.0
CEILING_SHARE_GOAL: Final = 0.5
NOOP_SHARE_GOAL: Final = 0.9


@dataclass(frozen=True)
class Target:
    key: str
    label: str
    server: str
    route: str
    hits: bool
    """True: the same body every request (cache hits); False: a new row every request."""


def _project_targets() -> list[Target]:
    routes = (("legacy", "legacy /predict"), ("v1", "V1"), ("v2", "V2 REST"))
    return [
        Target(
            f"predictor-{route}-{'hit' if hits else 'miss'}",
            f"this project, {name}, {100 if hits else 0}% hits",
            "predictor",
            route,
            hits,
        )
        for route, name in routes
        for hits in (False, True)
    ]


TARGETS: Final = (
    Target("raw-asgi", "raw ASGI app, constant answer (ceiling)", "raw-asgi", "legacy", True),
    Target("textbook-v1", "KServe textbook custom model, V1", "textbook", "v1", False),
    Target("mlserver-v2", "MLServer + mlserver-sklearn, V2", "mlserver", "v2", False),
    Target("noop-v1", "KServe no-op model, V1", "noop", "v1", False),
    Target("noop-v2", "KServe no-op model, V2", "noop", "v2", False),
    *_project_targets(),
)
PEERS: Final = ("textbook-v1", "mlserver-v2")


@dataclass(frozen=True)
class Options:
    model_dir: Path
    seconds: float
    warmup: float
    connections: int
    threads: int
    cold_starts: int
    profile_seconds: float
    work_dir: Path
    out_dir: Path
    doc: Path | None
    """The page whose perf:bench section to replace (`--update-docs`), or None."""
    mlserver_venv: Path | None
    """The MLServer peer's virtualenv; None skips MLServer."""
    peer_omp_threads: int
    """OMP_NUM_THREADS for the scikit-learn peers; 0 leaves it unset."""
    command: str
    cpus: CpuPlan
    """Where the servers, and wrk, run (`--unpinned`: anywhere)."""


@dataclass(frozen=True)
class Measurement:
    target: Target
    load: WrkResult
    server_cores: float
    """CPU the server used during the run, in cores (its whole process tree)."""
    hit_ratio: float | None
    """Share of rows the server answered from its cache, from its /metrics (this project)."""
    full_gcs: int | None
    """The server's full garbage collections during the run (this project)."""

    def as_dict(self) -> dict[str, Any]:
        extra = {
            "server_cores": self.server_cores,
            "hit_ratio": self.hit_ratio,
            "full_gcs": self.full_gcs,
        }
        return {**asdict(self.target), **self.load.as_dict(), **extra}


@dataclass(frozen=True)
class Check:
    name: str
    goal: str
    measured: str
    met: bool
    shortfall: str
    profile_key: str | None
    """The target whose server to profile when the check is missed."""


@dataclass(frozen=True)
class ProfileLink:
    path: Path
    headline: str


# -- servers and load ----------------------------------------------------------------------


class Bench:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.mlserver_skipped: str | None = "skipped with --no-mlserver"
        self._mlserver: Path | None = None
        if options.mlserver_venv is not None:
            try:
                self._mlserver = mlserver.ensure_venv(options.mlserver_venv)
                self.mlserver_skipped = None
            except mlserver.MLServerUnavailable as e:
                self.mlserver_skipped = str(e)

    def run_all(self) -> list[Measurement]:
        """Every target, one server at a time, in `TARGETS` order."""
        measurements = []
        for server, group in itertools.groupby(TARGETS, key=lambda t: t.server):
            if server == "mlserver" and self._mlserver is None:
                print(f"MLServer: {self.mlserver_skipped}", flush=True)
                continue
            with self.started(server) as service:
                for target in group:
                    measurements.append(self.measure(service, target))
                    print(_progress_line(measurements[-1]), flush=True)
        return measurements

    @contextlib.contextmanager
    def started(self, server: str) -> Iterator[Service]:
        service, ready_path = self._spawn(server)
        with running(service, ready_path):
            yield service

    def _spawn(self, server: str) -> tuple[Service, str]:
        model_dir, work_dir = self.options.model_dir, self.options.work_dir
        cpus = self.options.cpus.server
        threads = self.options.peer_omp_threads
        peer_env = {"OMP_NUM_THREADS": str(threads)} if threads > 0 else {}
        if server == "raw-asgi":
            return spawn_raw_asgi(work_dir, cpus), "/"
        if server == "textbook":
            module, args = "perf.peers.kserve_textbook", ["--model_dir", str(model_dir)]
            service = spawn_python_module(server, module, args, work_dir, peer_env, cpus)
            return service, PREDICTOR_READY_PATH
        if server == "noop":
            module = "perf.peers.kserve_noop"
            service = spawn_python_module(server, module, [], work_dir, cpus=cpus)
            return service, PREDICTOR_READY_PATH
        if server == "mlserver" and self._mlserver is not None:
            service = mlserver.spawn_mlserver(self._mlserver, model_dir, work_dir, peer_env, cpus)
            return service, mlserver.READY_PATH
        if server == "predictor":
            return spawn_predictor(model_dir, cpus=cpus), PREDICTOR_READY_PATH
        raise ValueError(f"unknown or unavailable server {server!r}")

    def load(self, service: Service, target: Target, seconds: float, base: int) -> WrkResult:
        url = service.base_url + path(target.route)
        connections, threads = self.options.connections, self.options.threads
        return run_wrk(
            url, payload_of(target), seconds, connections, threads, base, self.options.cpus.others
        )

    def measure(self, service: Service, target: Target) -> Measurement:
        base = unique_base(target)
        check_answer(service.base_url + path(target.route), first_body(target, base))
        self.load(service, target, self.options.warmup, base + UNIQUE_RANGE // 2)
        counts_hits = target.server == "predictor"
        with observe(service, metrics=counts_hits) as seen:
            result = self.load(service, target, self.options.seconds, base)
        ratio = seen.hit_ratio if counts_hits else None
        return Measurement(target, result, seen.cores, ratio, seen.full_gcs)

    def profile(self, target: Target, out_path: Path) -> ProfileLink:
        """Load `target` again while py-spy samples its server; write the top to `out_path`."""
        raw_path = self.options.work_dir / f"{out_path.stem}.raw"
        seconds = self.options.profile_seconds
        base = unique_base(target) + UNIQUE_RANGE // 4
        with self.started(target.server) as service:
            self.load(service, target, self.options.warmup, base)
            recorder = start_recording(service.pid, seconds, raw_path)
            self.load(service, target, seconds + 1, base + UNIQUE_RANGE // 8)
            _, errors = recorder.communicate()
        if recorder.returncode != 0:
            message = f"py-spy failed ({recorder.returncode}): {errors.decode().strip()}"
            out_path.write_text(message + "\n")
            return ProfileLink(out_path, message)
        profile = summarize(raw_path)
        out_path.write_text(profile.render(f"{target.label}: py-spy, {seconds:g} s under load"))
        return ProfileLink(out_path, f"top own time: {profile.headline()}")


def payload_of(target: Target) -> Payload:
    return fixed_body(target.route) if target.hits else unique_template(target.route)


def unique_base(target: Target) -> int:
    return (TARGETS.index(target) + 1) * UNIQUE_RANGE


def first_body(target: Target, base: int) -> str:
    payload = payload_of(target)
    return payload if isinstance(payload, str) else payload.render(base - 1)


def check_answer(url: str, body: str) -> None:
    """One request before the load: it must answer 200 with JSON."""
    response = httpx.post(url, content=body, headers={"Content-Type": "application/json"})
    if response.status_code != 200:
        raise RuntimeError(f"POST {url} answered {response.status_code}: {response.text[:500]}")
    json.loads(response.text)


def _progress_line(m: Measurement) -> str:
    return (
        f"{m.target.label}: {m.load.requests_per_s:,.0f} req/s, P50 {m.load.p50_ms:.2f} ms, "
        f"P99 {m.load.p99_ms:.2f} ms, errors {m.load.errors}"
    )


# -- targets -------------------------------------------------------------------------------


def _short_by(ratio: float, goal: float) -> str:
    return "" if ratio >= goal else f"{100 * (1 - ratio / goal):.0f}% short of {goal:g}x"


def _share_check(
    name: str, ours: Measurement | None, base: Measurement | None, goal: float
) -> Check | None:
    if ours is None or base is None:
        return None
    ratio = ours.load.requests_per_s / base.load.requests_per_s
    measured = f"{ratio:.2f}x"
    return Check(
        name, f"≥ {goal:g}x", measured, ratio >= goal, _short_by(ratio, goal), ours.target.key
    )


def _peer_check(ours: Measurement, peer: Measurement) -> Check:
    ratio = ours.load.requests_per_s / peer.load.requests_per_s
    p99_ok = ours.load.p99_ms <= peer.load.p99_ms
    shortfall = "; ".join(
        part
        for part in (
            _short_by(ratio, PEER_SPEEDUP_GOAL),
            "" if p99_ok else f"P99 {ours.load.p99_ms - peer.load.p99_ms:.2f} ms worse",
        )
        if part
    )
    return Check(
        f"{ours.target.label} vs best peer ({peer.target.label})",
        f"≥ {PEER_SPEEDUP_GOAL:g}x requests/s, P99 ≤ peer's",
        f"{ratio:.2f}x, P99 {ours.load.p99_ms:.2f} vs {peer.load.p99_ms:.2f} ms",
        ratio >= PEER_SPEEDUP_GOAL and p99_ok,
        shortfall,
        ours.target.key,
    )


def evaluate(measurements: Sequence[Measurement], cold: dict[str, Any]) -> list[Check]:
    by_key = {m.target.key: m for m in measurements}
    checks: list[Check | None] = []
    peers = [by_key[key] for key in PEERS if key in by_key]
    if peers:
        best = max(peers, key=lambda m: m.load.requests_per_s)
        checks += [
            _peer_check(by_key[f"predictor-{route}-miss"], best) for route in ("legacy", "v1", "v2")
        ]
    checks.append(
        _share_check(
            "legacy /predict at 100% hits vs raw ASGI ceiling",
            by_key.get("predictor-legacy-hit"),
            by_key.get("raw-asgi"),
            CEILING_SHARE_GOAL,
        )
    )
    checks += [
        _share_check(
            f"{route.upper()} at 0% hits vs no-op KServe model",
            by_key.get(f"predictor-{route}-miss"),
            by_key.get(f"noop-{route}"),
            NOOP_SHARE_GOAL,
        )
        for route in ("v1", "v2")
    ]
    ready = cold["ready_s"]["median"]
    checks.append(
        Check(
            "cold start: process start → ready (median)",
            f"≤ {COLD_START_GOAL_S:g} s",
            f"{ready:.2f} s",
            ready <= COLD_START_GOAL_S,
            "" if ready <= COLD_START_GOAL_S else f"{ready - COLD_START_GOAL_S:.2f} s over",
            None,
        )
    )
    return [check for check in checks if check is not None]


# -- report --------------------------------------------------------------------------------


def measurements_table(measurements: Sequence[Measurement]) -> str:
    header = ["target", "route", "cache hits (measured)", "requests/s", "P50 ms", "P90 ms"]
    header += ["P99 ms", "errors", "server CPU (cores)", "wrk CPU (cores)", "full GCs"]
    rows = [
        [
            m.target.label,
            path(m.target.route) if m.target.server != "raw-asgi" else "any",
            _hits_cell(m),
            m.load.requests_per_s,
            m.load.p50_ms,
            m.load.p90_ms,
            m.load.p99_ms,
            m.load.errors,
            m.server_cores,
            m.load.generator_cores,
            m.full_gcs,
        ]
        for m in measurements
    ]
    return report.table(header, rows)


def _hits_cell(m: Measurement) -> str:
    planned = "100%" if m.target.hits else "0%"
    if m.target.server != "predictor":
        return planned if m.target.server == "raw-asgi" else "no cache"
    measured = "n/a" if m.hit_ratio is None else f"{100 * m.hit_ratio:.1f}%"
    return f"{planned} ({measured})"


def checks_table(checks: Sequence[Check], profiles: dict[str, ProfileLink], doc: Path) -> str:
    rows = [
        [
            c.name,
            c.goal,
            c.measured,
            "met" if c.met else f"**missed**: {c.shortfall}",
            _profile_cell(profiles[c.profile_key], doc)
            if c.profile_key in profiles
            else ("import times below" if not c.met else ""),
        ]
        for c in checks
    ]
    return report.table(["target", "goal", "measured", "result", "profile"], rows)


def _profile_cell(profile: ProfileLink, doc: Path) -> str:
    return f"{report.link(profile.path, doc)}: {profile.headline}"


def cold_start_table(cold: dict[str, Any], imports: dict[str, Any]) -> str:
    names = {
        "ready_s": "process start → ready (s)",
        "first_prediction_s": "process start → first prediction received (s)",
        "first_request_ms": "first request (ms)",
        "steady_p50_ms": "steady-state request, median (ms)",
    }
    rows = [
        [label, cold[key]["median"], cold[key]["min"], cold[key]["max"]]
        for key, label in names.items()
    ]
    ratio = cold["first_request_ms"]["median"] / cold["steady_p50_ms"]["median"]
    rows.append(["first request / steady state", ratio, None, None])
    table = report.table([f"cold start ({cold['starts']} starts)", "median", "min", "max"], rows)
    top = ", ".join(f"{t['package']} {t['seconds']:.2f}" for t in imports["top"])
    return (
        f"{table}\n\nImports at start (`PYTHONPROFILEIMPORTTIME`, which slows them; total "
        f"{imports['total_s']:.2f} s; seconds per package, what it imports included): {top}."
    )


def method_line(options: Options, wrk_version: str) -> str:
    threads = options.peer_omp_threads
    omp = f"OMP_NUM_THREADS={threads}" if threads > 0 else "OMP_NUM_THREADS unset"
    return (
        f"Load generator: {wrk_version}, {options.threads} thread(s), "
        f"{options.connections} keep-alive connections, {options.warmup:g} s warm-up then "
        f"{options.seconds:g} s measured per target; one row per request; "
        f"{options.cpus.describe()}. "
        f"scikit-learn peers run with {omp}."
    )


def render(
    info: dict[str, Any],
    options: Options,
    tables: Sequence[str],
    mlserver_skipped: str | None,
) -> str:
    parts = [
        f"Machine: {report.machine_line(info)}.",
        f"Command: `{options.command}`.",
        method_line(options, info["wrk"]),
        *([f"MLServer not measured: {mlserver_skipped}"] if mlserver_skipped else []),
        *tables,
    ]
    return "\n\n".join(parts)


# -- main ----------------------------------------------------------------------------------


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = report.tool_parser(
        "bench", "Benchmark this project against its peers.", "Logs, temp.", doc_section="bench"
    )
    parser.add_argument("--seconds", type=float, default=12.0, help="Measured s per target.")
    parser.add_argument("--warmup", type=float, default=3.0, help="Warm-up s per target.")
    parser.add_argument("--connections", type=int, default=20, help="wrk connections.")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads.")
    parser.add_argument("--cold_starts", type=int, default=5, help="Cold starts to time.")
    parser.add_argument("--profile_seconds", type=float, default=8.0, help="py-spy seconds.")
    parser.add_argument("--no-mlserver", action="store_true", help="Skip MLServer.")
    parser.add_argument(
        "--mlserver_venv",
        type=Path,
        default=mlserver.default_venv(os.environ),
        help="The MLServer peer's virtualenv, created on first use and shared by every "
        "checkout (default: under $HOUSING_PREDICTOR_CACHE, else "
        "${XDG_CACHE_HOME:-~/.cache}/housing-predictor).",
    )
    parser.add_argument(
        "--peer_omp_threads",
        type=int,
        default=1,
        help="OMP_NUM_THREADS of the scikit-learn peers (0: unset, all cores).",
    )
    parser.add_argument("--quick", action="store_true", help="Smoke run: 2 s per target.")
    parser.add_argument("--unpinned", action="store_true", help=UNPINNED_HELP)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.warmup, args.cold_starts, args.profile_seconds = 2.0, 1.0, 1, 2.0
    report.resolve_outputs(parser, args)
    return Options(
        model_dir=args.model_dir,
        seconds=args.seconds,
        warmup=args.warmup,
        connections=args.connections,
        threads=args.threads,
        cold_starts=args.cold_starts,
        profile_seconds=args.profile_seconds,
        work_dir=args.work_dir,
        out_dir=args.out,
        doc=args.doc if args.update_docs else None,
        mlserver_venv=None if args.no_mlserver else args.mlserver_venv,
        peer_omp_threads=args.peer_omp_threads,
        command=report.command_line("bench", argv),
        cpus=cpu_plan(not args.unpinned),
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    report.make_dirs(options.out_dir, options.work_dir)
    wrk = require("wrk", "apt-get install -y wrk")
    started, info, stamp = time.monotonic(), report.machine(), f"bench-{report.stamp()}"
    info["wrk"] = tool_version(wrk, "-v")
    bench = Bench(options)
    measurements = bench.run_all()
    print("cold start ...", flush=True)
    starts = [coldstart.measure_once(options.model_dir) for _ in range(options.cold_starts)]
    cold, imports = coldstart.summarize(starts), coldstart.import_times(options.model_dir)
    checks = evaluate(measurements, cold)
    by_key = {t.key: t for t in TARGETS}
    missed = dict.fromkeys(c.profile_key for c in checks if not c.met and c.profile_key)
    profiles = {
        key: bench.profile(by_key[key], options.out_dir / f"{stamp}-profile-{key}.txt")
        for key in missed
        if key is not None
    }
    report_path = options.out_dir / f"{stamp}.md"
    tables = [
        measurements_table(measurements),
        checks_table(checks, profiles, report_path),
        cold_start_table(cold, imports),
    ]
    markdown = f"# Benchmark {stamp}\n\n" + render(info, options, tables, bench.mlserver_skipped)
    data = {
        "machine": info,
        "command": options.command,
        "cpus": options.cpus.describe(),
        "options": {k: str(v) for k, v in asdict(options).items()},
        "measurements": [m.as_dict() for m in measurements],
        "checks": [asdict(c) for c in checks],
        "cold_start": cold,
        "imports": imports,
        "profiles": {k: asdict(v) | {"path": str(v.path)} for k, v in profiles.items()},
        "mlserver_skipped": bench.mlserver_skipped,
        "duration_s": time.monotonic() - started,
    }
    written = report.write_results(options.out_dir, stamp, data, markdown)
    if options.doc is not None:
        doc_tables = [
            measurements_table(measurements),
            checks_table(checks, profiles, options.doc),
            cold_start_table(cold, imports),
        ]
        section = render(info, options, doc_tables, bench.mlserver_skipped)
        section += f"\n\nFull report: {report.link(written.md_path, options.doc)}."
        report.splice(options.doc, "bench", section)
    print(markdown)
    print(f"\nwrote {written.md_path} and {written.json_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
