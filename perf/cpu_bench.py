"""`make bench-cpu`: server CPU time per request, against a raw ASGI floor, in one run.

    .venv/bin/python -m perf.cpu_bench --model_dir DIR            # every target
    .venv/bin/python -m perf.cpu_bench --model_dir DIR --quick    # a smoke run
    .venv/bin/python -m perf.cpu_bench --model_dir DIR --targets floor,legacy-miss

Requests per second on a shared, noisy machine say more about the neighbours than about
the server. CPU time per request does not: the server is pinned to core 0 and the load
generator (wrk; for gRPC ModelInfer h2load and k6, perf.grpc_load) and the private
redis-server to core 1, and the server's user + system
time (its whole process tree, from /proc/PID/stat) is divided by the requests wrk saw
answered. Each target runs three windows and keeps the cheapest (a window disturbed by
another process only ever costs more). Every figure is also given as a ratio to the floor
measured in the same run: a raw uvicorn app that reads the body and answers a constant,
the least any Python HTTP server can cost here.

On a machine with one core nothing is pinned, and the report says so.
Writes `cpu-<stamp>.{json,md}` into perf/results/ (ignored; docs/results/ with --curate).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from harness.cpu import CpuWindow, cheapest, measure_windows
from harness.payloads import fixed_body, path, unique_template
from harness.pinning import CpuPlan, cpu_plan, pinned
from perf import grpc_load, report
from perf.bench import check_answer
from perf.loadgen import WRK_SCRIPT, Payload, WrkResult, parse_wrk, require, tool_version
from perf.procs import (
    PREDICTOR_READY_PATH,
    Service,
    private_redis,
    running,
    spawn_predictor,
    spawn_raw_asgi,
)

# Unique rows of different targets and windows never meet in a cache.
UNIQUE_RANGE: Final = 10**11


@dataclass(frozen=True)
class Target:
    key: str
    label: str
    route: str
    hits: bool
    """True: the same body every request (cache hits); False: a new row every request."""
    redis: bool = False
    """True: the server uses a private redis-server (pinned beside the load generator)."""
    redis_hits: bool = False
    """True: each window replays rows a prefill run wrote to Redis, with a one-entry
    in-process tier and no response memo, so that Redis answers them (hits from Redis)."""
    floor: bool = False
    """True: the raw ASGI app instead of this project."""
    grpc: bool = False
    """True: gRPC ModelInfer, one row per call (hits: h2load; misses: k6)."""


def _project_targets() -> list[Target]:
    routes = (("legacy", "legacy /predict"), ("v1", "V1"), ("v2", "V2 JSON"))
    targets = [
        Target(
            f"{route}-{'hit' if hits else 'miss'}",
            f"{name}, {100 if hits else 0}% hits",
            route,
            hits,
        )
        for route, name in routes
        for hits in (False, True)
    ]
    targets += [
        Target(f"{route}-miss-redis", f"{name}, 0% hits, with Redis", route, False, redis=True)
        for route, name in routes
    ]
    targets += [
        Target("grpc-miss", "gRPC ModelInfer, 0% hits (k6)", "v2", False, grpc=True),
        Target("grpc-hit", "gRPC ModelInfer, 100% hits (h2load)", "v2", True, grpc=True),
        Target(
            "grpc-miss-redis",
            "gRPC ModelInfer, 0% hits, with Redis (k6)",
            "v2",
            False,
            redis=True,
            grpc=True,
        ),
    ]
    targets.append(
        Target(
            "legacy-redis-hit",
            "legacy /predict, 100% Redis hits (in-process tier of 1 row)",
            "legacy",
            False,
            redis=True,
            redis_hits=True,
        )
    )
    return targets


# Redis hits are answered faster than the misses that wrote them: the prefill runs longer
# than a window, so that a window never runs past the rows it wrote.
PREFILL_WINDOWS: Final = 3
REDIS_HIT_FLAGS: Final = ("--cache_size", "1", "--response_cache_size", "0")


TARGETS: Final = (
    Target("floor", "raw ASGI app, constant answer (floor)", "legacy", True, floor=True),
    *_project_targets(),
)


@dataclass(frozen=True)
class Options:
    model_dir: Path
    seconds: float
    warmup: float
    windows: int
    connections: int
    targets: tuple[Target, ...]
    work_dir: Path
    out_dir: Path
    cpus: CpuPlan
    command: str


Window = CpuWindow[WrkResult]


@dataclass(frozen=True)
class Measurement:
    target: Target
    windows: tuple[Window, ...]

    @property
    def best(self) -> Window:
        return cheapest(self.windows)

    @property
    def errors(self) -> int:
        return sum(w.load.errors for w in self.windows)

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self.target),
            "cpu_us_per_request": self.best.cpu_us_per_request,
            "requests_per_s": self.best.load.requests_per_s,
            "errors": self.errors,
            "windows": [
                {"cpu_us_per_request": w.cpu_us_per_request, **w.load.as_dict()}
                for w in self.windows
            ],
        }


def run_wrk_pinned(
    url: str, payload: Payload, seconds: float, connections: int, base: int, cpus: CpuPlan
) -> WrkResult:
    """wrk with one thread on the load CPU: POST `payload` to `url` for `seconds`."""
    wrk = require("wrk", "apt-get install -y wrk")
    command = [wrk, "-t", "1", "-c", str(connections), "-d", f"{max(1, round(seconds))}s"]
    command += ["--timeout", "10s", "-s", str(WRK_SCRIPT), url, "--"]
    command += (
        [payload] if isinstance(payload, str) else [payload.prefix, payload.suffix, str(base)]
    )
    done = subprocess.run(pinned(command, cpus.others), capture_output=True, text=True, check=True)
    return parse_wrk(done.stdout, generator_cores=0.0)


def payload_of(target: Target) -> Payload:
    return fixed_body(target.route) if target.hits else unique_template(target.route)


class CpuBench:
    def __init__(self, options: Options) -> None:
        self.options = options

    def run_all(self) -> list[Measurement]:
        measurements = []
        for target in self.options.targets:
            with self.started(target) as service:
                measurements.append(self.measure(service, target))
            print(_progress_line(measurements[-1], measurements), flush=True)
        return measurements

    @contextlib.contextmanager
    def started(self, target: Target) -> Iterator[Service]:
        work_dir, cpus = self.options.work_dir, self.options.cpus
        with contextlib.ExitStack() as stack:
            if target.floor:
                service, ready = spawn_raw_asgi(work_dir, cpus.server), "/"
            else:
                extra: list[str] = []
                if target.redis:
                    redis_url = stack.enter_context(private_redis(work_dir, cpus.others))
                    extra = ["--redis_url", redis_url]
                    if target.redis_hits:
                        extra += REDIS_HIT_FLAGS
                service, ready = (
                    spawn_predictor(self.options.model_dir, extra, cpus=cpus.server),
                    PREDICTOR_READY_PATH,
                )
            stack.enter_context(running(service, ready))
            yield service

    def measure(self, service: Service, target: Target) -> Measurement:
        if target.grpc:
            return self.measure_grpc(service, target)
        o = self.options
        url = service.base_url + path(target.route)
        base = (TARGETS.index(target) + 1) * UNIQUE_RANGE
        payload = payload_of(target)
        first = payload if isinstance(payload, str) else payload.render(base - 1)
        check_answer(url, first)
        step = UNIQUE_RANGE // (o.windows + 2)
        run_wrk_pinned(url, payload, o.warmup, o.connections, base + step, o.cpus)

        def start(n: int) -> int:
            return base + (n + 2) * step

        def prefill(n: int) -> None:
            """Rows of window n written to Redis first, so that the window reads them back."""
            if target.redis_hits:
                seconds = o.seconds * PREFILL_WINDOWS
                run_wrk_pinned(url, payload, seconds, o.connections, start(n), o.cpus)

        windows = measure_windows(
            service.pid,
            o.windows,
            lambda n: run_wrk_pinned(url, payload, o.seconds, o.connections, start(n), o.cpus),
            lambda load: load.requests,
            prefill,
        )
        return Measurement(target, windows)

    def measure_grpc(self, service: Service, target: Target) -> Measurement:
        o = self.options
        address = f"127.0.0.1:{service.grpc_port}"
        grpc_load.check_grpc_answer(address)
        base = (TARGETS.index(target) + 1) * UNIQUE_RANGE
        step = UNIQUE_RANGE // (o.windows + 2)

        def run(seconds: float, start: int) -> WrkResult:
            if target.hits:
                return grpc_load.run_h2load(address, seconds, o.connections, o.cpus.others)
            return grpc_load.run_k6_unique(
                address, seconds, o.connections, start, o.work_dir, o.cpus.others
            )

        run(o.warmup, base + step)
        windows = measure_windows(
            service.pid,
            o.windows,
            lambda n: run(o.seconds, base + (n + 2) * step),
            lambda load: load.requests,
        )
        return Measurement(target, windows)


def _floor_us(measurements: Sequence[Measurement]) -> float | None:
    floors = [m.best.cpu_us_per_request for m in measurements if m.target.floor]
    return floors[0] if floors else None


def _ratio(m: Measurement, floor: float | None) -> float | None:
    return None if floor is None else m.best.cpu_us_per_request / floor


def _progress_line(m: Measurement, so_far: Sequence[Measurement]) -> str:
    ratio = _ratio(m, _floor_us(so_far))
    times = ", ".join(f"{w.cpu_us_per_request:.0f}" for w in m.windows)
    shown = f" = {ratio:.2f}x floor" if ratio is not None else ""
    return f"{m.target.key}: {m.best.cpu_us_per_request:.1f} us/request{shown} (windows {times})"


def measurements_table(measurements: Sequence[Measurement]) -> str:
    floor = _floor_us(measurements)
    rows = [
        [
            m.target.label,
            round(m.best.cpu_us_per_request, 1),
            _ratio(m, floor),
            round(m.best.load.requests_per_s),
            m.best.load.p99_ms,
            m.errors,
        ]
        for m in measurements
    ]
    header = ["target", "server CPU µs/request", "x floor", "req/s", "P99 ms", "errors"]
    return report.table(header, rows)


def method_line(options: Options, wrk_version: str) -> str:
    return (
        f"{wrk_version}; {options.connections} connections (wrk, 1 thread); "
        f"{options.cpus.describe()}; "
        f"{options.windows} windows of {options.seconds:g} s after {options.warmup:g} s warm-up, "
        "the cheapest kept; one row per request."
    )


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = report.tool_parser("cpu_bench", "Server CPU time per request.", "Logs, temp.")
    parser.add_argument("--seconds", type=float, default=5.0, help="Seconds per window.")
    parser.add_argument("--warmup", type=float, default=2.0, help="Warm-up s per target.")
    parser.add_argument("--windows", type=int, default=3, help="Windows per target.")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections.")
    keys = ",".join(t.key for t in TARGETS)
    parser.add_argument(
        "--targets", default=keys, help="Comma-separated targets to run, in this order."
    )
    parser.add_argument("--quick", action="store_true", help="Smoke run: 1 s windows.")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    by_key = {t.key: t for t in TARGETS}
    wanted = [key for key in args.targets.split(",") if key]
    unknown = [key for key in wanted if key not in by_key]
    if unknown:
        parser.error(f"unknown targets {unknown}; known: {keys}")
    if args.quick:
        args.seconds, args.warmup = 1.0, 0.5
    report.resolve_outputs(parser, args)
    return Options(
        model_dir=args.model_dir,
        seconds=args.seconds,
        warmup=args.warmup,
        windows=args.windows,
        connections=args.connections,
        targets=tuple(by_key[key] for key in wanted),
        work_dir=args.work_dir,
        out_dir=args.out,
        cpus=cpu_plan(),
        command=report.command_line("cpu_bench", argv),
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    report.make_dirs(options.out_dir, options.work_dir)
    wrk = require("wrk", "apt-get install -y wrk")
    if any(t.redis for t in options.targets):
        require("redis-server", "apt-get install -y redis-server")
    info, name = report.machine(), f"cpu-{report.stamp()}"
    info["wrk"] = tool_version(wrk, "-v")
    if any(t.grpc and t.hits for t in options.targets):
        h2load = require("h2load", "apt-get install -y nghttp2-client")
        info["h2load"] = tool_version(h2load, "--version")
    started = time.monotonic()
    measurements = CpuBench(options).run_all()
    table = measurements_table(measurements)
    markdown = (
        f"# CPU per request {name}\n\n{report.machine_line(info)}\n\n"
        f"{method_line(options, info['wrk'])}\n\n`{options.command}`\n\n{table}\n"
    )
    data = {
        "machine": info,
        "command": options.command,
        "pinned": options.cpus.pinned,
        "cpus": options.cpus.describe(),
        "measurements": [m.as_dict() for m in measurements],
        "duration_s": time.monotonic() - started,
    }
    written = report.write_results(options.out_dir, name, data, markdown)
    print(markdown)
    print(f"wrote {written.md_path} and {written.json_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
