"""`validate`: the simulation of one pod against the real server under k6's open model.

For each load (a share of the highest throughput in capacity.json at the cache rate), k6
sends a constant arrival rate (`perf/load.js`, MODE=rate) to one real server process with
a private redis-server, and the simulator runs the same rate against one pod fed by the
same capacity (no queue-proxy limit, no activator: k6 talks to the process directly). The
server is pinned to one CPU and k6 and Redis to another, as `measure` pinned them
(`--unpinned` to share). The real side is read twice: k6's latencies (client side) and the
server's own request histogram (`housing_request_seconds`, from /metrics before and after).
Writes validate.json and validate.md with P50/P99 of both and their ratios.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from typing import Any

from harness.payloads import MODEL_NAME
from harness.pinning import cpu_plan
from harness.promtext import percentiles_ms
from perf.loadgen import run_k6
from perf.procs import PREDICTOR_READY_PATH, observe, private_redis, running, spawn_predictor
from perf.report import machine, table
from planner.capacity import Capacity
from planner.knative import AutoscalerConfig, DeciderSpec, Revision
from planner.profiles import parse_profile
from planner.report import summarize
from planner.sim import Setup, simulate

UNIQUE_RANGE = 10**9
SERVER_HISTOGRAM = "housing_request_seconds"


def simulated_ms(
    capacity: Capacity, rate: float, seconds: int, cache_rate: float, model: str
) -> dict[str, Any]:
    revision = Revision(container_concurrency=0, min_scale=1, max_scale=1, target_burst_capacity=0)
    setup = Setup(
        spec=DeciderSpec.resolve(revision, AutoscalerConfig()),
        container_concurrency=0,
        timeout_s=revision.timeout_s,
        service_times=capacity.service_times(cache_rate, model),
        pod_start_s=capacity.cold_start_s,
        start_pods=1,
        cooldown_s=0.0,
    )
    summary = summarize(simulate(setup, parse_profile(f"const:{rate:g}:{seconds}")))
    return dict(summary["overall_ms"])


def main(args: argparse.Namespace, argv: Sequence[str]) -> None:
    capacity = Capacity.load(args.capacity)
    peak = capacity.saturation_rps(args.cache_rate)
    loads = [float(x) for x in args.loads.split(",")]
    args.work_dir.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    cpus = cpu_plan(not args.unpinned)
    info = {
        "machine": machine(),
        "command": "python -m planner " + " ".join(argv),
        "cpus": cpus.describe(),
    }
    with private_redis(args.work_dir, cpus.others) as redis_url:
        service = spawn_predictor(args.model_dir, ["--redis_url", redis_url], cpus=cpus.server)
        with running(service, PREDICTOR_READY_PATH):
            for i, share in enumerate(loads, start=1):
                rate = round(share * peak)
                load_before = os.getloadavg()[0]
                env = {
                    "BASE_URL": service.base_url,
                    "MODEL_NAME": MODEL_NAME,
                    "MODE": "rate",
                    "RATE": str(rate),
                    "DURATION": f"{args.seconds}s",
                    "CACHE_RATE": repr(args.cache_rate),
                    "UNIQUE_BASE": str(i * UNIQUE_RANGE),
                    "P99_MS": "1000",
                    "PRE_VUS": "100",
                    "MAX_VUS": "400",
                }
                with observe(service) as seen:
                    real = run_k6(env, args.work_dir / f"validate-{i}.json", cpus=cpus.others)
                server = percentiles_ms(
                    seen.before, seen.after, SERVER_HISTOGRAM, {"route": "legacy"}
                )
                sim = simulated_ms(capacity, rate, args.seconds, args.cache_rate, "serial")
                drawn = simulated_ms(capacity, rate, args.seconds, args.cache_rate, "draw")
                row = {
                    "load": share,
                    "rate": rate,
                    "real_ms": real.latency_ms,
                    "server_ms": server,
                    "server_cores": seen.cores,
                    "real_requests_per_s": real.requests_per_s,
                    "dropped": real.dropped_iterations,
                    "failed_rate": real.failed_rate,
                    "simulated_ms": sim,
                    "ratio_p50": _ratio(sim["p50"], real.latency_ms["p50"]),
                    "ratio_p99": _ratio(sim["p99"], real.latency_ms["p99"]),
                    "server_ratio_p50": _ratio(sim["p50"], server["p50"]),
                    "server_ratio_p99": _ratio(sim["p99"], server["p99"]),
                    "simulated_draw_ms": drawn,
                    "draw_ratio_p50": _ratio(drawn["p50"], real.latency_ms["p50"]),
                    "draw_ratio_p99": _ratio(drawn["p99"], real.latency_ms["p99"]),
                    "load_average_1m": [load_before, os.getloadavg()[0]],
                }
                rows.append(row)
                print(
                    f"{share:.0%} ({rate}/s): real P50/P99 {real.latency_ms['p50']:.2f}/"
                    f"{real.latency_ms['p99']:.2f} ms, simulated {sim['p50']:.2f}/"
                    f"{sim['p99']:.2f} ms, load {load_before:.2f}",
                    flush=True,
                )
    data = {
        **info,
        "capacity": str(args.capacity),
        "saturation_rps": peak,
        "cache_rate": args.cache_rate,
        "seconds": args.seconds,
        "rows": rows,
    }
    (args.out / "validate.json").write_text(json.dumps(data, indent=1) + "\n")
    text = markdown(data)
    (args.out / "validate.md").write_text(text)
    print(text, end="")


def _ratio(simulated: float | None, real: float | None) -> float | None:
    if simulated is None or not real:
        return None
    return simulated / real


def markdown(data: dict[str, Any]) -> str:
    header = [
        "load",
        "req/s",
        "real P50",
        "sim P50",
        "sim/real",
        "real P99",
        "server P50",
        "server P99",
        "sim P99",
        "sim/real",
        "sim/server",
        "draw P50",
        "draw P99",
        "dropped",
        "load avg",
    ]
    rows = [
        [
            f"{r['load']:.0%}",
            r["rate"],
            r["real_ms"]["p50"],
            r["simulated_ms"]["p50"],
            r["ratio_p50"],
            r["real_ms"]["p99"],
            r["server_ms"]["p50"],
            r["server_ms"]["p99"],
            r["simulated_ms"]["p99"],
            r["ratio_p99"],
            r["server_ratio_p99"],
            r["simulated_draw_ms"]["p50"],
            r["simulated_draw_ms"]["p99"],
            r["dropped"],
            f"{r['load_average_1m'][0]:.2f}",
        ]
        for r in data["rows"]
    ]
    return (
        f"One pod, k6 open model, cache rate {data['cache_rate']:g}, {data['seconds']} s per "
        f"rate; capacity {data['saturation_rps']:.0f} req/s (the highest measured); ms. "
        "real: k6 (client side); server: the server's own request histogram; sim: the "
        "default serial model; draw: `--service-model draw`; sim/real and sim/server: the "
        f"simulated P99 over k6's and over the server's. {data['cpus']}.\n\n"
        + table(header, rows)
        + "\n"
    )
