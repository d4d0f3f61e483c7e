"""Render the dashboard's traffic and latency panels from a local run to a PNG, for a person
without Grafana.

    .venv/bin/python scripts/render_panel.py --url http://127.0.0.1:8080
    .venv/bin/python -m scripts.render_panel --out docs/latency-panel.png  # the panel the docs show

The PNG goes to `perf/results/latency-panel.png` (ignored by git) unless `--out` says where.

While it sends requests to every REST route (`--rate` per second each, a `--unique` share of
them new rows, the rest repeated), it scrapes `URL/metrics` every `--step` seconds. It then
computes, for each route, what the dashboard's queries give over a `--window`:

    sum by (route) (rate(housing_request_seconds_count[window]))
    histogram_quantile(q, sum by (le) (rate(housing_request_seconds_bucket{route=...}[window])))

for q = 0.5, 0.9, 0.95, 0.99 (interpolated inside buckets, as Prometheus does), and draws
them with matplotlib. `--rate 0` sends nothing and plots whatever traffic the server gets.
"""

from __future__ import annotations

import argparse
import itertools
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

import httpx
import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
from matplotlib.lines import Line2D

from harness.paths import REPO
from harness.payloads import ROUTES, fixed_body, path, unique_template
from harness.promtext import PERCENTILES, Scrape, delta, percentiles_ms, scrape

DEFAULT_OUT: Final = REPO / "perf" / "results" / "latency-panel.png"

HISTOGRAM: Final = "housing_request_seconds"
LINE_STYLES: Final[dict[int, Literal["-", "--", "-.", ":"]]] = {
    50: "-",
    90: "--",
    95: "-.",
    99: ":",
}
JSON_HEADERS: Final = {"Content-Type": "application/json"}


@dataclass
class RouteSeries:
    """One route's panel data: request rate and latency quantiles at each window end."""

    seconds: list[float] = field(default_factory=list)
    requests_per_s: list[float] = field(default_factory=list)
    quantiles_ms: dict[int, list[float | None]] = field(
        default_factory=lambda: {p: [] for p in PERCENTILES}
    )


def send_load(
    base_url: str, route: str, rate: float, unique_share: float, stop: threading.Event
) -> None:
    """POST one-row bodies to `route` at `rate` per second until `stop` is set."""
    repeated = fixed_body(route)
    template = unique_template(route)
    # Unique values no earlier run used, so those rows are cache misses.
    fresh = itertools.count(time.time_ns() // 1000)
    every = round(1 / unique_share) if unique_share > 0 else 0
    with httpx.Client(base_url=base_url, headers=JSON_HEADERS, timeout=10.0) as client:
        due = time.monotonic()
        for n in itertools.count():
            if stop.wait(max(0.0, due - time.monotonic())):
                return
            body = template.render(next(fresh)) if every and n % every == 0 else repeated
            client.post(path(route), content=body)
            due += 1 / rate


def scrapes(base_url: str, seconds: float, step: float) -> Iterator[tuple[float, Scrape]]:
    """(seconds since the first, samples) every `step` seconds for `seconds`."""
    start = time.monotonic()
    for n in itertools.count():
        due = start + n * step
        if due - start > seconds:
            return
        time.sleep(max(0.0, due - time.monotonic()))
        yield time.monotonic() - start, scrape(base_url)


def panel_series(timeline: Sequence[tuple[float, Scrape]], window: float) -> dict[str, RouteSeries]:
    """Each route's rate and quantiles over the `window` seconds before each scrape."""
    routes = sorted(
        {
            s.labels["route"]
            for _, samples in timeline
            for s in samples
            if s.name == f"{HISTOGRAM}_count"
        }
    )
    series = {route: RouteSeries() for route in routes}
    for end, (t_end, after) in enumerate(timeline):
        starts = [i for i, (t, _) in enumerate(timeline[:end]) if t_end - t >= window]
        if not starts:
            continue
        t_start, before = timeline[starts[-1]]
        for route, data in series.items():
            labels = {"route": route}
            data.seconds.append(t_end)
            count = delta(before, after, f"{HISTOGRAM}_count", labels)
            data.requests_per_s.append(count / (t_end - t_start))
            for p, ms in percentiles_ms(before, after, HISTOGRAM, labels).items():
                data.quantiles_ms[int(p.removeprefix("p"))].append(ms)
    return series


def render(series: dict[str, RouteSeries], window: float, note: str, out: Path) -> None:
    figure, (rate_axes, latency_axes) = plt.subplots(
        2, 1, figsize=(11, 7), sharex=True, gridspec_kw={"height_ratios": [1, 2]}
    )
    figure.suptitle(note, fontsize="small", color="dimgray")
    colors = dict(zip(series, itertools.cycle(plt.rcParams["axes.prop_cycle"].by_key()["color"])))
    for route, data in series.items():
        rate_axes.plot(data.seconds, data.requests_per_s, color=colors[route], label=route)
        for p, values in data.quantiles_ms.items():
            points = [(t, v) for t, v in zip(data.seconds, values, strict=True) if v is not None]
            if points:
                xs, ys = zip(*points, strict=True)
                latency_axes.plot(xs, ys, LINE_STYLES[p], color=colors[route])
    rate_axes.set_title(f"Requests/s by route (rate over {window:g} s)")
    rate_axes.set_ylabel("requests/s")
    highest = max((rate for d in series.values() for rate in d.requests_per_s), default=0.0)
    rate_axes.set_ylim(0, highest * 1.25 or 1)
    latency_axes.set_title(f"Latency by route: P50, P90, P95, P99 of {HISTOGRAM}")
    latency_axes.set_ylabel("milliseconds (log scale)")
    latency_axes.set_yscale("log")
    latency_axes.set_xlabel("seconds since the first scrape")
    outside = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "fontsize": "small"}
    rate_axes.legend(title="route", **outside)
    styles = [Line2D([], [], color="black", linestyle=LINE_STYLES[p]) for p in PERCENTILES]
    latency_axes.legend(styles, [f"p{p}" for p in PERCENTILES], title="quantile", **outside)
    for axes in (rate_axes, latency_axes):
        axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> dict[str, RouteSeries]:
    parser = argparse.ArgumentParser(
        prog=".venv/bin/python scripts/render_panel.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="The server's base URL.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PNG path.")
    parser.add_argument("--seconds", type=float, default=60.0, help="How long to run.")
    parser.add_argument("--step", type=float, default=1.0, help="Seconds between scrapes.")
    parser.add_argument("--window", type=float, default=10.0, help="Rate window, seconds.")
    parser.add_argument("--rate", type=float, default=20.0, help="Requests/s per route; 0: none.")
    parser.add_argument("--unique", type=float, default=0.2, help="About this share are new rows.")
    args = parser.parse_args(argv)
    stop = threading.Event()
    senders = [
        threading.Thread(target=send_load, args=(args.url, route, args.rate, args.unique, stop))
        for route in (ROUTES if args.rate > 0 else ())
    ]
    for sender in senders:
        sender.start()
    try:
        timeline = list(scrapes(args.url, args.seconds, args.step))
    finally:
        stop.set()
        for sender in senders:
            sender.join()
    series = panel_series(timeline, args.window)
    load = (
        f"{args.rate:g} requests/s per route, {args.unique:.0%} of them new rows"
        if args.rate > 0
        else "the traffic the server got"
    )
    render(series, args.window, f"{args.url}: {load}", args.out)
    print(f"wrote {args.out}: {', '.join(series) or 'no route had traffic'}")
    return series


if __name__ == "__main__":
    main()
