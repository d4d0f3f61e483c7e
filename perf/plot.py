"""The PNG of `make load`: latency percentiles against cache rate, one panel per load level."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt

CLIENT_STYLES: Final = {"p50": "o-", "p90": "s-", "p95": "^-", "p99": "D-"}


def plot_percentiles(
    levels: Mapping[str, Sequence[Mapping[str, Any]]], title: str, out_path: Path
) -> Path:
    """`levels`: load-level label → runs, each with `cache_rate`, `client_ms`, `server_ms`."""
    figure, axes = plt.subplots(
        1, len(levels), figsize=(6 * len(levels), 4.5), squeeze=False, sharey=True
    )
    for axis, (label, runs) in zip(axes[0], levels.items(), strict=True):
        _panel(axis, label, runs)
    axes[0][0].set_ylabel("latency (ms, log scale)")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(out_path, dpi=110)
    plt.close(figure)
    return out_path


def _panel(axis: Any, label: str, runs: Sequence[Mapping[str, Any]]) -> None:
    # Cache rates as evenly spaced categories: 0.999 and 1.0 would overlap on a linear axis.
    positions = list(range(len(runs)))
    for name, style in CLIENT_STYLES.items():
        values = [run["client_ms"][name] for run in runs]
        axis.plot(positions, values, style, label=f"client {name.upper()}")
    server = [run["server_ms"]["p99"] for run in runs]
    if any(value is not None for value in server):
        axis.plot(positions, server, "x--", color="grey", label="server P99 (histogram)")
    axis.set_xticks(positions, [f"{run['cache_rate']:g}" for run in runs])
    axis.set_xlabel("cache rate (share of repeated requests)")
    axis.set_yscale("log")
    axis.set_title(label)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize="small")
