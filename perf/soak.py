"""`make soak`: minutes of mixed k6 load while the private Redis is stopped and restarted.

    .venv/bin/python -m perf.soak --model_dir DIR [--minutes 5] [--rate 400] [--cache_size 20000]
    .venv/bin/python -m perf.soak --model_dir DIR --quick    # ~30 s of load, one 10 s outage
    .venv/bin/python -m perf.soak --model_dir DIR --curate   # a run the docs cite

Starts a private `redis-server` and `python -m predictor --redis_url ... --cache_size N`,
then runs `perf/load.js` in the open model with three scenarios at once (`MIX`: legacy,
V1 and V2 at different cache rates; every unique row unique over the whole soak, so the
in-process LRU fills up to `--cache_size` and then evicts). On a schedule (`outages`) it
stops Redis, with SIGTERM the first time and SIGKILL the next, and restarts it empty on
the same port. Meanwhile it samples the server's RSS (`/proc/PID/status`), rows predicted
and Redis errors (`/metrics`) every few seconds, and scrapes `/metrics` at the start, at
each stop and restart, and at the end; the server's log gives each change of its Redis
breaker. k6 writes every request to a gzipped CSV in the work directory, from which
latencies are split into "Redis up", "Redis down" and "after restart" windows.

Writes `soak-<stamp>.{json,md}` into `perf/results/` (ignored; `docs/results/`, committed,
with `--curate`): requests, non-2xx (what they were), latency per window, per outage and
per interval, RSS at cold start (ready, before any request), when the LRU first holds
`--cache_size` rows, and at the end, the fault timeline, the breaker's changes and the
server's metric deltas, against the targets (no non-2xx; RSS growth under 10%).
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final, NamedTuple

import numpy as np

from harness.payloads import MODEL_NAME
from harness.promtext import Scrape, delta, percentiles_ms, scrape, total
from harness.redis_server import RedisServer, running_redis
from perf import report
from perf.loadgen import K6Result, k6_executable, require, run_k6, tool_version
from perf.procs import PREDICTOR_READY_PATH, Observation, Service, observe, spawn_predictor
from perf.procs import running as running_service

SERVER_HISTOGRAM: Final = "housing_request_seconds"
ROWS_PREDICTED: Final = "housing_rows_predicted_total"
REDIS_ERRORS: Final = "housing_redis_errors_total"
REDIS_SKIPPED: Final = "housing_redis_skipped_total"
# The server logs each change of its Redis breaker: closed → open, and back to closed.
BREAKER_OPENED: Final = re.compile(r"^Redis at \S+ unavailable \((?P<reason>.*)\); serving")
BREAKER_CLOSED: Final = re.compile(r"^Redis at \S+ answers again;")
# Requests in this many seconds after a restart are "after restart", not "Redis up": the
# breaker lets a probe through only after its cool-down (5 s by default).
RECOVERY_SECONDS: Final = 10.0
RSS_GROWTH_TARGET: Final = 0.10
# k6 tags kept on every sample of the CSV: enough to tell scenarios and failures apart.
K6_SYSTEM_TAGS: Final = "status,scenario,error,error_code,expected_response"
PHASES: Final = ("Redis up", "Redis down", "after restart")


@dataclass(frozen=True)
class Stream:
    """One k6 scenario: `share` of the requests, on `route`, repeating at `cache_rate`."""

    route: str
    cache_rate: float
    share: float


MIX: Final = (Stream("legacy", 0.5, 0.5), Stream("v1", 0.75, 0.25), Stream("v2", 0.0, 0.25))


@dataclass(frozen=True)
class Outage:
    """Redis stopped `start_s` seconds into the load, for `seconds`, by `signal`."""

    start_s: float
    seconds: float
    signal: str
    """`SIGTERM` (a clean stop) or `SIGKILL`."""

    @property
    def end_s(self) -> float:
        return self.start_s + self.seconds


@dataclass(frozen=True)
class Options:
    model_dir: Path
    seconds: int
    rate: int
    cache_size: int
    outages: tuple[Outage, ...]
    sample_s: float
    interval_s: int
    work_dir: Path
    out_dir: Path
    command: str

    def scenario_rates(self) -> list[int]:
        return [max(1, round(self.rate * stream.share)) for stream in MIX]

    def scenarios(self) -> dict[str, Stream]:
        """k6's scenario names (`ROUTE_k`, as perf/load.js names them) → streams."""
        return {f"{stream.route}_{k}": stream for k, stream in enumerate(MIX)}


@dataclass(frozen=True)
class Sample:
    """The server every `--sample_seconds`: seconds since the load started, and its state."""

    t_s: float
    rss_mib: float
    rows_predicted: float
    redis_errors: float
    redis_up: bool
    load_1m: float


@dataclass
class Fault:
    """One outage as it happened: seconds since the load started, and /metrics around it."""

    signal: str
    stopped_s: float
    at_stop: Scrape = field(repr=False)
    restarted_s: float | None = None
    """None while Redis is down."""
    at_restart: Scrape = field(default_factory=list, repr=False)

    def contains(self, t_s: float) -> bool:
        return self.stopped_s <= t_s and (self.restarted_s is None or t_s < self.restarted_s)

    @property
    def down_s(self) -> float | None:
        return None if self.restarted_s is None else self.restarted_s - self.stopped_s

    def recovering(self, t_s: float) -> bool:
        restarted = self.restarted_s
        return restarted is not None and restarted <= t_s < restarted + RECOVERY_SECONDS


class Transition(NamedTuple):
    """A change of the server's Redis breaker, from its log."""

    t_s: float
    opened: bool
    reason: str
    """Why it opened (the last Redis error); empty when it closed."""


class Request(NamedTuple):
    t_s: float
    ms: float
    status: str
    scenario: str
    error: str


# -- the run -------------------------------------------------------------------------------


def rss_mib(pid: int) -> float:
    """Resident set size of `pid` (`VmRSS` of /proc/PID/status), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass
class Soak:
    options: Options
    service: Service
    redis: RedisServer
    started: float = field(default_factory=time.time)
    samples: list[Sample] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)

    def elapsed(self) -> float:
        return time.time() - self.started

    def sample(self) -> None:
        metrics = scrape(self.service.base_url)
        self.samples.append(
            Sample(
                t_s=self.elapsed(),
                rss_mib=rss_mib(self.service.pid),
                rows_predicted=total(metrics, ROWS_PREDICTED),
                redis_errors=total(metrics, REDIS_ERRORS),
                redis_up=self.redis.running,
                load_1m=os.getloadavg()[0],
            )
        )

    def step_faults(self) -> None:
        """Stop or restart Redis when the schedule says so."""
        t_s, done = self.elapsed(), len(self.faults)
        if not self.redis.running:
            if t_s >= self.options.outages[done - 1].end_s:
                self.redis.start()
                at_restart = scrape(self.service.base_url)
                self.faults[-1].restarted_s, self.faults[-1].at_restart = t_s, at_restart
        elif done < len(self.options.outages) and t_s >= self.options.outages[done].start_s:
            outage = self.options.outages[done]
            self.faults.append(Fault(outage.signal, t_s, scrape(self.service.base_url)))
            if outage.signal == "SIGKILL":
                self.redis.kill()
            else:
                self.redis.stop()

    def watch(self, k6: Future[K6Result]) -> K6Result:
        """Sample and inject faults until k6 is done."""
        next_sample = 0.0
        while not k6.done():
            if self.elapsed() >= next_sample:
                self.sample()
                next_sample += self.options.sample_s
            self.step_faults()
            time.sleep(0.1)
        self.sample()
        return k6.result()


def k6_env(options: Options, base_url: str, csv_path: Path) -> dict[str, str]:
    specs = [
        f"{stream.route}:{stream.cache_rate:g}:{rate}"
        for stream, rate in zip(MIX, options.scenario_rates(), strict=True)
    ]
    per_scenario = max(options.scenario_rates())
    return {
        "BASE_URL": base_url,
        "MODEL_NAME": MODEL_NAME,
        "MODE": "rate",
        "SCENARIOS": ",".join(specs),
        "DURATION": f"{options.seconds}s",
        "PRE_VUS": str(max(20, per_scenario // 10)),
        "MAX_VUS": str(max(200, per_scenario // 2)),
        "K6_OUT": f"csv={csv_path}",
        "K6_CSV_TIME_FORMAT": "unix_milli",
        "K6_SYSTEM_TAGS": K6_SYSTEM_TAGS,
    }


@dataclass(frozen=True)
class Measured:
    k6: K6Result
    cold_rss_mib: float
    seen: Observation
    samples: list[Sample]
    faults: list[Fault]
    requests: list[Request]
    transitions: list[Transition]


def measure(options: Options) -> Measured:
    k6_files = options.work_dir / f"soak-k6-{report.stamp()}"
    csv_path, summary_path = k6_files.with_suffix(".csv.gz"), k6_files.with_suffix(".json")
    with running_redis(options.work_dir) as redis:
        extra = ["--redis_url", redis.url, "--cache_size", str(options.cache_size)]
        service = spawn_predictor(options.model_dir, extra)
        with (
            running_service(service, PREDICTOR_READY_PATH),
            observe(service) as seen,
            ThreadPoolExecutor(1) as pool,
        ):
            cold_rss = rss_mib(service.pid)
            soak = Soak(options, service, redis)
            env = k6_env(options, service.base_url, csv_path)
            k6 = pool.submit(run_k6, env, summary_path)
            result = soak.watch(k6)
            print(result.summary_line, flush=True)
    requests = read_requests(csv_path, soak.started)
    transitions = read_transitions(service.log_path, soak.started)
    return Measured(result, cold_rss, seen, soak.samples, soak.faults, requests, transitions)


def read_requests(csv_path: Path, started: float) -> list[Request]:
    """Every request of k6's CSV output: when (s since `started`), how long, what status."""
    with gzip.open(csv_path, "rt", newline="") as text:
        return [
            Request(
                int(row["timestamp"]) / 1000 - started,
                float(row["metric_value"]),
                row["status"],
                row["scenario"],
                row["error"],
            )
            for row in csv.DictReader(text)
            if row["metric_name"] == "http_req_duration"
        ]


def read_transitions(log_path: Path, started: float) -> list[Transition]:
    """The breaker's changes that the server logged (JSON lines), in seconds since `started`."""
    transitions = []
    for line in log_path.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        opened = BREAKER_OPENED.match(record["message"])
        if opened or BREAKER_CLOSED.match(record["message"]):
            t_s = datetime.fromisoformat(record["time"]).timestamp() - started
            transitions.append(
                Transition(t_s, opened is not None, opened["reason"] if opened else "")
            )
    return transitions


# -- analysis ------------------------------------------------------------------------------


def phase(t_s: float, faults: Sequence[Fault]) -> str:
    if any(fault.contains(t_s) for fault in faults):
        return "Redis down"
    if any(fault.recovering(t_s) for fault in faults):
        return "after restart"
    return "Redis up"


def latency(requests: Sequence[Request]) -> dict[str, Any]:
    """Count, non-2xx and client-side P50/P90/P99/max (ms) of `requests`."""
    ms = np.array([request.ms for request in requests])
    stats: dict[str, Any] = {"requests": len(requests), "non_2xx": len(non_2xx(requests))}
    for name, q in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100)):
        stats[name] = float(np.percentile(ms, q)) if len(ms) else None
    return stats


def non_2xx(requests: Sequence[Request]) -> list[Request]:
    return [request for request in requests if not request.status.startswith("2")]


def non_2xx_breakdown(requests: Sequence[Request], faults: Sequence[Fault]) -> list[dict[str, Any]]:
    counts = Counter(
        (request.status, request.scenario, phase(request.t_s, faults), request.error)
        for request in non_2xx(requests)
    )
    return [
        {"status": status, "scenario": scenario, "phase": where, "error": error, "count": n}
        for (status, scenario, where, error), n in counts.most_common()
    ]


def by_phase(requests: Sequence[Request], faults: Sequence[Fault]) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[Request]] = {name: [] for name in PHASES}
    for request in requests:
        groups[phase(request.t_s, faults)].append(request)
    return {name: latency(group) for name, group in groups.items()}


def by_scenario(requests: Sequence[Request], options: Options) -> dict[str, dict[str, Any]]:
    return {
        name: latency([request for request in requests if request.scenario == name])
        for name in options.scenarios()
    }


def fault_rows(measured: Measured) -> list[dict[str, Any]]:
    rows = []
    for fault in measured.faults:
        opened = _first(measured.transitions, fault.stopped_s, opened=True)
        closed = _first(measured.transitions, fault.restarted_s, opened=False)
        during = [request for request in measured.requests if fault.contains(request.t_s)]
        after = [request for request in measured.requests if fault.recovering(request.t_s)]
        server = percentiles_ms(fault.at_stop, fault.at_restart, SERVER_HISTOGRAM)
        rows.append(
            {
                "signal": fault.signal,
                "stopped_s": fault.stopped_s,
                "restarted_s": fault.restarted_s,
                "down_s": fault.down_s,
                "breaker_opened_after_s": opened,
                "breaker_closed_after_restart_s": closed,
                "redis_errors": delta(fault.at_stop, fault.at_restart, REDIS_ERRORS),
                "redis_skipped": delta(fault.at_stop, fault.at_restart, REDIS_SKIPPED),
                "during": latency(during),
                "server_p99_ms_during": server["p99"],
                "after_restart": latency(after),
            }
        )
    return rows


def _first(transitions: Sequence[Transition], since: float | None, opened: bool) -> float | None:
    """Seconds from `since` to the breaker's first opening (or closing) at or after it."""
    if since is None:
        return None
    times = (t.t_s for t in transitions if t.opened is opened and t.t_s >= since)
    return next((t_s - since for t_s in times), None)


def intervals(measured: Measured, options: Options) -> list[dict[str, Any]]:
    """Latency, Redis state and errors, breaker openings and RSS per `interval_s` slice."""
    rows = []
    previous = measured.samples[0]
    for start in range(0, options.seconds, options.interval_s):
        end = start + options.interval_s
        inside = [s for s in measured.samples if start <= s.t_s < end] or [previous]
        last, down = inside[-1], sum(not s.redis_up for s in inside)
        opened = [t for t in measured.transitions if t.opened and start <= t.t_s < end]
        rows.append(
            {
                "from_s": start,
                "to_s": end,
                **latency([r for r in measured.requests if start <= r.t_s < end]),
                "redis": "down" if down == len(inside) else "partly down" if down else "up",
                "rss_mib": last.rss_mib,
                "breaker_opened": len(opened),
                "redis_errors": last.redis_errors - previous.redis_errors,
                "rows_predicted": last.rows_predicted,
                "load_1m": last.load_1m,
            }
        )
        previous = last
    return rows


def rss_summary(measured: Measured, cache_size: int) -> dict[str, Any]:
    """RSS at cold start, when the LRU first held `cache_size` rows, at the end, and growth."""
    samples = measured.samples
    end = samples[-1].rss_mib
    full = next((s for s in samples if s.rows_predicted >= cache_size), None)
    return {
        "cold_mib": measured.cold_rss_mib,
        "lru_full_mib": full.rss_mib if full else None,
        "lru_full_at_s": full.t_s if full else None,
        "end_mib": end,
        "max_mib": max(s.rss_mib for s in samples),
        "growth_from_cold": end / measured.cold_rss_mib - 1,
        "growth_from_lru_full": end / full.rss_mib - 1 if full else None,
    }


def breaker_summary(
    transitions: Sequence[Transition], faults: Sequence[Fault]
) -> list[dict[str, Any]]:
    """How often the breaker opened in each window, and why."""
    counts = Counter((phase(t.t_s, faults), t.reason) for t in transitions if t.opened)
    return [
        {"window": where, "reason": reason, "opened": n}
        for (where, reason), n in counts.most_common()
    ]


def metric_deltas(before: Scrape, after: Scrape) -> dict[str, float]:
    """Every `housing_*` counter that moved during the soak, by label set."""
    moved: dict[str, float] = {}
    for sample in after:
        if sample.name.startswith("housing_") and sample.name.endswith("_total"):
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            key = f"{sample.name}{{{labels}}}" if labels else sample.name
            moved[key] = delta(before, after, sample.name, sample.labels)
    return {key: value for key, value in moved.items() if value}


def targets(non_2xx_count: int, rss: dict[str, Any]) -> list[dict[str, Any]]:
    growths = [("from cold start", rss["growth_from_cold"])]
    if rss["growth_from_lru_full"] is not None:
        growths.append(("from the LRU bound reached", rss["growth_from_lru_full"]))
    checks = [{"target": "non-2xx = 0", "value": non_2xx_count, "met": non_2xx_count == 0}]
    checks += [
        {
            "target": f"RSS growth < {RSS_GROWTH_TARGET:.0%} {label}",
            "value": f"{growth:+.1%}",
            "met": growth < RSS_GROWTH_TARGET,
        }
        for label, growth in growths
    ]
    return checks


def analyse(measured: Measured, options: Options) -> dict[str, Any]:
    requests, faults = measured.requests, measured.faults
    rss, overall = rss_summary(measured, options.cache_size), latency(requests)
    return {
        "k6": measured.k6.as_dict(),
        "overall": overall,
        "phases": by_phase(requests, faults),
        "scenarios": by_scenario(requests, options),
        "non_2xx": non_2xx_breakdown(requests, faults),
        "faults": fault_rows(measured),
        "breaker": breaker_summary(measured.transitions, faults),
        "breaker_transitions": [t._asdict() for t in measured.transitions],
        "intervals": intervals(measured, options),
        "rss": rss,
        "server_cores": measured.seen.cores,
        "hit_ratio": measured.seen.hit_ratio,
        "full_gcs": measured.seen.full_gcs,
        "metric_deltas": metric_deltas(measured.seen.before, measured.seen.after),
        "samples": [asdict(sample) for sample in measured.samples],
        "targets": targets(overall["non_2xx"], rss),
    }


# -- report --------------------------------------------------------------------------------

LATENCY_HEADER: Final = ["requests", "non-2xx", "P50 ms", "P90 ms", "P99 ms", "max ms"]


def _latency_cells(stats: dict[str, Any]) -> list[Any]:
    return [stats[key] for key in ("requests", "non_2xx", "p50", "p90", "p99", "max")]


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1%}"


def _targets_table(result: dict[str, Any]) -> str:
    rows = [[t["target"], t["value"], "met" if t["met"] else "missed"] for t in result["targets"]]
    return report.table(["target", "value", "met"], rows)


def _latency_tables(result: dict[str, Any]) -> list[str]:
    windows = {"all": result["overall"], **result["phases"]}
    return [
        report.table(
            ["window", *LATENCY_HEADER],
            [[name, *_latency_cells(stats)] for name, stats in windows.items()],
        ),
        report.table(
            ["scenario", *LATENCY_HEADER],
            [[name, *_latency_cells(stats)] for name, stats in result["scenarios"].items()],
        ),
    ]


def _faults_table(result: dict[str, Any]) -> str:
    header = ["signal", "stopped at s", "down s", "breaker opened after s"]
    header += ["breaker closed s after restart", "Redis errors", "Redis ops skipped"]
    header += ["P99 ms down", "server P99 ms down", "P99 ms after restart", "non-2xx"]
    rows = [
        [
            f["signal"],
            f["stopped_s"],
            f["down_s"],
            f["breaker_opened_after_s"],
            f["breaker_closed_after_restart_s"],
            f["redis_errors"],
            f["redis_skipped"],
            f["during"]["p99"],
            f["server_p99_ms_during"],
            f["after_restart"]["p99"],
            f["during"]["non_2xx"] + f["after_restart"]["non_2xx"],
        ]
        for f in result["faults"]
    ]
    return report.table(header, rows)


def _memory_table(rss: dict[str, Any]) -> str:
    header = ["RSS cold MiB", "RSS when LRU full MiB", "LRU full at s", "RSS end MiB"]
    header += ["RSS max MiB", "growth from cold", "growth from LRU full"]
    row = [rss["cold_mib"], rss["lru_full_mib"], rss["lru_full_at_s"], rss["end_mib"]]
    row += [rss["max_mib"], _percent(rss["growth_from_cold"])]
    return report.table(header, [[*row, _percent(rss["growth_from_lru_full"])]])


def _timeline_table(result: dict[str, Any]) -> str:
    header = ["from s", "to s", *LATENCY_HEADER, "Redis", "RSS MiB"]
    header += ["breaker opened", "Redis errors", "rows predicted"]
    keys = ("redis", "rss_mib", "breaker_opened", "redis_errors", "rows_predicted", "load_1m")
    rows = [
        [row["from_s"], row["to_s"], *_latency_cells(row), *(row[key] for key in keys)]
        for row in result["intervals"]
    ]
    return report.table([*header, "load 1 min"], rows)


def _setup(info: dict[str, Any], options: Options) -> str:
    mix = ", ".join(
        f"`{name}` {rate}/s at cache rate {stream.cache_rate:g}"
        for (name, stream), rate in zip(
            options.scenarios().items(), options.scenario_rates(), strict=True
        )
    )
    return (
        f"{info['k6']}, open model, {options.seconds} s at {options.rate} requests/s in "
        f"{len(MIX)} scenarios at once ({mix}); one row per request, unique rows never "
        "repeat. The predictor runs with its default flags plus `--redis_url` (a private "
        f"`redis-server`) and `--cache_size {options.cache_size}` (the in-process LRU "
        'bound); k6, Redis and the predictor share the machine. Windows: "Redis down" from '
        'each stop to its restart, "after restart" the '
        f'{RECOVERY_SECONDS:g} s that follow, "Redis up" the rest.'
    )


def render(info: dict[str, Any], options: Options, result: dict[str, Any]) -> str:
    overall, k6 = result["overall"], result["k6"]
    load_end = result["samples"][-1]["load_1m"]
    parts = [
        f"Machine: {report.machine_line(info)}; 1-minute load average at the end {load_end:.2f}.",
        f"Command: `{options.command}`.",
        _setup(info, options),
        "### Targets",
        _targets_table(result),
        (
            f"{overall['requests']} requests answered ({k6['requests_per_s']:.1f}/s; "
            f"{k6['dropped_iterations']} iterations dropped by k6), {overall['non_2xx']} "
            f"non-2xx. Server CPU {result['server_cores']:.2f} cores, "
            f"{result['full_gcs']} full GCs."
        ),
        "### Latency by window (client side, k6)",
        *_latency_tables(result),
        "### Redis outages",
        _faults_table(result),
        (
            "The breaker's changes, from the server's log (it logs each closed → open and "
            "each return to closed):"
        ),
        report.table(
            ["window", "breaker opened", "last Redis error"],
            [[row["window"], row["opened"], row["reason"]] for row in result["breaker"]],
        ),
        "### Memory",
        _memory_table(result["rss"]),
        "### Timeline",
        _timeline_table(result),
        "### Server metrics (deltas over the soak)",
        report.table(["metric", "delta"], list(result["metric_deltas"].items())),
    ]
    if result["non_2xx"]:
        header = ["status", "scenario", "window", "error", "count"]
        rows = [list(row.values()) for row in result["non_2xx"]]
        parts += ["### Non-2xx answers", report.table(header, rows)]
    return "\n\n".join(parts)


# -- main ----------------------------------------------------------------------------------


def schedule(seconds: int, outage_s: float, quick: bool) -> tuple[Outage, ...]:
    """One outage at 1/4 of the run (`--quick`), or two: SIGTERM at 1/4, SIGKILL at 3/5."""
    if quick:
        return (Outage(seconds / 4, outage_s, "SIGTERM"),)
    return (
        Outage(seconds / 4, outage_s, "SIGTERM"),
        Outage(seconds * 3 / 5, outage_s, "SIGKILL"),
    )


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = report.tool_parser(
        "soak",
        "Minutes of mixed k6 load while the private Redis is stopped and restarted.",
        "Logs, k6 CSV.",
    )
    parser.add_argument("--minutes", type=float, default=5.0, help="Length of the load.")
    parser.add_argument("--rate", type=int, default=400, help="Requests/s, all scenarios.")
    parser.add_argument("--cache_size", type=int, default=20_000, help="Server's LRU bound.")
    parser.add_argument("--outage_seconds", type=float, default=25.0, help="Redis down for.")
    parser.add_argument("--sample_seconds", type=float, default=2.0, help="RSS sampling.")
    parser.add_argument(
        "--quick", action="store_true", help="Smoke run: 32 s at 100/s, one 10 s outage."
    )
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.quick:
        args.minutes, args.rate, args.outage_seconds, args.sample_seconds = 32 / 60, 100, 10, 1
    seconds = round(args.minutes * 60)
    outages = schedule(seconds, args.outage_seconds, args.quick)
    if outages[-1].end_s > seconds - RECOVERY_SECONDS:
        parser.error("--outage_seconds too long: Redis must be back before the load ends")
    report.resolve_outputs(parser, args)
    return Options(
        model_dir=args.model_dir,
        seconds=seconds,
        rate=args.rate,
        cache_size=args.cache_size,
        outages=outages,
        sample_s=args.sample_seconds,
        interval_s=max(4, seconds // 10),
        work_dir=args.work_dir,
        out_dir=args.out,
        command=report.command_line("soak", argv),
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    report.make_dirs(options.out_dir, options.work_dir)
    require("redis-server", "apt-get install -y redis-server")
    started, info, stamp = time.monotonic(), report.machine(), f"soak-{report.stamp()}"
    info["k6"] = tool_version(k6_executable(), "version")
    result = analyse(measure(options), options)
    markdown = f"# Soak {stamp}\n\n" + render(info, options, result)
    data = {
        "machine": info,
        "command": options.command,
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()},
        **result,
        "duration_s": time.monotonic() - started,
    }
    written = report.write_results(options.out_dir, stamp, data, markdown)
    print(markdown)
    print(f"\nwrote {written.md_path} and {written.json_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
