"""What a simulation shows: the summary, the per-second timeline, markdown and the plot.

Latency is in-cluster (ingress in -> answer out: activator, queue-proxy and container), of
`/predict` requests only, as the original's Grafana panels showed server-side numbers.
"Peak" is the highest quantile of any `WINDOW_S`-second window of answers (what a
Grafana panel shows while pods are added); "peak warm" the same over the requests that
arrived once a pod was ready (a scale from zero's cold start left out); "sustained" is
the quantile over the requests that arrived in the profile's last constant stretch,
after its first `SETTLE_S` seconds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import numpy as np

from perf.report import table
from planner.sim import FAILED, OK, TIMED_OUT, Result, quantiles_ms

WINDOW_S: Final = 10.0
MIN_WINDOW_REQUESTS: Final = 20
SETTLE_S: Final = 60.0
QUANTILES: Final = ("p50", "p90", "p95", "p99")


def summarize(result: Result) -> dict[str, Any]:
    a = result.outcomes.arrays()
    predict = a["predict"]
    ok = predict & (a["outcome"] == OK)
    answered = predict & (a["outcome"] != FAILED)
    profile = result.profile
    duration = profile.duration_s
    plateau = profile.plateau_start_s
    settle = min(SETTLE_S, (duration - plateau) / 2)
    sustained = answered & (a["arrived"] >= plateau + settle)
    windows = window_quantiles(a["finished"][answered], a["latency"][answered])
    peak = {q: max((w[q] for w in windows), default=None) for q in QUANTILES}
    warm_from = first_ready_s(result)
    warm = answered & (a["arrived"] >= warm_from)
    warm_windows = window_quantiles(a["finished"][warm], a["latency"][warm])
    peak_warm = {q: max((w[q] for w in warm_windows), default=None) for q in QUANTILES}
    return {
        "requests": int(predict.sum()),
        "all_requests": int(a["latency"].size),
        "ok": int(ok.sum()),
        "failed": int((predict & (a["outcome"] == FAILED)).sum()),
        "timed_out": int((predict & (a["outcome"] == TIMED_OUT)).sum()),
        "failed_all_routes": int((a["outcome"] != OK).sum()),
        "overall_ms": quantiles_ms(a["latency"][answered]),
        "peak_ms": peak,
        "peak_warm_ms": peak_warm,
        "warm_from_s": warm_from,
        "sustained_ms": quantiles_ms(a["latency"][sustained]),
        "sustained_from_s": plateau + settle,
        "max_ms": float(a["latency"][answered].max() * 1000) if answered.any() else None,
        "pod_seconds": result.pod_seconds(),
        "pod_seconds_during_load": result.pod_seconds(until=duration),
        "max_pods": max((row["pods"] for row in result.timeline), default=0),
        "max_ready_pods": max((row["ready_pods"] for row in result.timeline), default=0),
        "panic_seconds": sum(1 for row in result.timeline if row["panic"]),
        "simulated_s": result.end_s,
    }


def first_ready_s(result: Result) -> float:
    """When the first pod was ready and the activator had nothing queued from before."""
    for row in result.timeline:
        if row["ready_pods"] > 0 and row["activator_queue"] == 0:
            return float(row["t"])
    return result.end_s


def window_quantiles(
    finished: np.ndarray[Any, Any], latency: np.ndarray[Any, Any]
) -> list[dict[str, float]]:
    """P50..P99 (ms) of the answers in each `WINDOW_S` window with enough of them."""
    if finished.size == 0:
        return []
    index = (finished // WINDOW_S).astype(int)
    order = np.argsort(index, kind="stable")
    index, latency = index[order], latency[order]
    bounds = np.flatnonzero(np.diff(index)) + 1
    rows = []
    for chunk_index, chunk in zip(np.split(index, bounds), np.split(latency, bounds), strict=True):
        if chunk.size < MIN_WINDOW_REQUESTS:
            continue
        values = np.percentile(chunk, [50, 90, 95, 99]) * 1000
        rows.append(
            {"t": float(chunk_index[0] * WINDOW_S), **dict(zip(QUANTILES, values, strict=False))}
        )
    return [{k: float(v) for k, v in row.items()} for row in rows]


def timeline(result: Result) -> list[dict[str, Any]]:
    """The per-second rows, each with the latency quantiles of its answered /predict."""
    a = result.outcomes.arrays()
    answered = a["predict"] & (a["outcome"] != FAILED)
    seconds = np.ceil(a["finished"][answered]).astype(int)
    latency = a["latency"][answered]
    order = np.argsort(seconds, kind="stable")
    seconds, latency = seconds[order], latency[order]
    rows = []
    for row in result.timeline:
        t = int(row["t"])
        lo, hi = np.searchsorted(seconds, [t, t + 1])
        rows.append({**row, **quantiles_ms(latency[lo:hi])})
    return rows


def write(result: Result, out_dir: Path, meta: dict[str, Any], plot: bool = True) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(result)
    rows = timeline(result)
    report = {**meta, "summary": summary, "timeline": rows}
    (out_dir / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (out_dir / "report.md").write_text(markdown(meta, summary))
    if plot:
        plot_timeline(rows, out_dir / "timeline.png", meta.get("title", ""))
    return report


def summary_rows(summary: dict[str, Any]) -> list[list[Any]]:
    return [
        [kind, *(summary[f"{kind}_ms"][q] for q in QUANTILES)]
        for kind in ("peak", "sustained", "overall")
    ]


def markdown(meta: dict[str, Any], summary: dict[str, Any]) -> str:
    lines = [f"# {meta.get('title', 'Simulation')}", ""]
    for key in ("isvc", "capacity", "profile", "cache_rate", "seed", "pod_start_s"):
        if key in meta:
            lines.append(f"- {key}: {meta[key]}")
    lines += ["", table(["latency (ms)", "P50", "P90", "P95", "P99"], summary_rows(summary)), ""]
    lines.append(
        f"{summary['requests']} /predict requests, {summary['failed']} failed, "
        f"{summary['timed_out']} timed out; max {summary['max_pods']} pods, "
        f"{summary['pod_seconds']:.0f} pod-seconds ({summary['pod_seconds_during_load']:.0f} "
        f"during the load), {summary['panic_seconds']} s in panic mode."
    )
    if "settings" in meta:
        lines += ["", "Settings:", ""]
        lines += [f"- `{k}`: {v}" for k, v in meta["settings"].items()]
    return "\n".join(lines) + "\n"


def plot_timeline(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Three panels like the original's Grafana board: requests/s, latency, pods."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [row["t"] for row in rows]
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    top.plot(t, [row["arrivals"] for row in rows], label="arrivals/s")
    top.plot(t, [row["ok"] for row in rows], label="answered/s", alpha=0.7)
    failed = [row["failed"] + row["timed_out"] for row in rows]
    if any(failed):
        top.plot(t, failed, label="failed + timed out/s", color="red")
    top.set_ylabel("requests/s")
    top.legend(loc="upper right")
    for q in QUANTILES:
        values = [row[q] if row[q] is not None else np.nan for row in rows]
        middle.plot(t, values, label=q.upper(), linewidth=1)
    middle.set_yscale("log")
    middle.set_ylabel("latency (ms, per second)")
    middle.legend(loc="upper right")
    bottom.step(t, [row["ready_pods"] for row in rows], where="post", label="ready pods")
    bottom.step(
        t, [row["desired_pods"] for row in rows], where="post", label="desired pods", linestyle="--"
    )
    panic = [row["t"] for row in rows if row["panic"]]
    if panic:
        bottom.scatter(panic, [0] * len(panic), marker="|", color="red", label="panic mode")
    bottom.set_ylabel("pods")
    bottom.set_xlabel("seconds")
    bottom.legend(loc="upper right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
