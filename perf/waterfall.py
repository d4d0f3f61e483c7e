"""A waterfall plot of the sample row's explanation, asked of a live server.

    .venv/bin/python -m perf.waterfall [--url http://127.0.0.1:8080] [--out PATH | --doc]

Sends the sample row (the first of `tests/data/sample.json`, the README's first house) to
`POST /v1/models/housing:explain` and draws how its 8 contributions lead from the base
value (the model's mean prediction over its training data) to its prediction, largest
first. Writes perf/results/explanation-waterfall.png (ignored by git) unless told
otherwise; `--doc` writes docs/img/explanation-waterfall.png, the picture docs/api.md shows.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import httpx
import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt

from harness.payloads import MODEL_NAME, REPO, fixed_row

DEFAULT_OUT: Final = REPO / "perf" / "results" / "explanation-waterfall.png"
DOC_OUT: Final = REPO / "docs" / "img" / "explanation-waterfall.png"
UP: Final = "#d62728"
DOWN: Final = "#1f77b4"


def explain(url: str, row: Mapping[str, float]) -> dict[str, Any]:
    response = httpx.post(
        f"{url}/v1/models/{MODEL_NAME}:explain", json={"instances": [dict(row)]}, timeout=120
    )
    response.raise_for_status()
    explanation: dict[str, Any] = response.json()["explanations"][0]
    return explanation


def plot(row: Mapping[str, float], explanation: Mapping[str, Any], out: Path) -> Path:
    base = float(explanation["base_value"])
    contributions: dict[str, float] = explanation["contributions"]
    ranked = sorted(contributions.items(), key=lambda item: abs(item[1]))  # largest on top
    figure, axis = plt.subplots(figsize=(8, 4.5))
    start = base + sum(value for _, value in ranked)  # the prediction: walk back down
    edges = [start, base]
    for position, (_, value) in reversed(list(enumerate(ranked))):
        start -= value
        edges.append(start)
        axis.barh(position, value, left=start, color=UP if value >= 0 else DOWN)
        label = f"{value:+.3f}"
        axis.text(start + max(value, 0) + 0.02, position, label, va="center", fontsize=9)
    axis.set_yticks(
        range(len(ranked)), [f"{name} = {row[name]:g}" for name, _ in ranked], fontsize=9
    )
    prediction = float(explanation["prediction"])
    axis.axvline(base, color="gray", linestyle=":", linewidth=1)
    axis.axvline(prediction, color="black", linestyle="--", linewidth=1)
    low, high = min(edges), max(edges)
    axis.set_xlim(low - 0.05 * (high - low), high + 0.12 * (high - low))  # room for labels
    axis.set_xlabel("median house value (100,000 USD)")
    axis.set_title(
        f"Why {prediction:.3f}? From the base value {base:.3f} (dotted) to the prediction (dashed)",
        fontsize=10,
    )
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110, metadata={"Software": None})
    plt.close(figure)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf.waterfall", description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="A running server.")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, default=DEFAULT_OUT, help="The PNG to write.")
    where.add_argument("--doc", action="store_true", help=f"Write {DOC_OUT.relative_to(REPO)}.")
    args = parser.parse_args(argv)
    row = fixed_row()
    print(plot(row, explain(args.url, row), DOC_OUT if args.doc else args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
