"""What explaining and drift-counting cost per row, in process (no HTTP): µs per row.

    .venv/bin/python -m perf.row_costs --model_dir model [--out perf/results/row-costs.json]

- TreeSHAP (`predictor.model.explain.TreeShap`, shap's path-dependent TreeExplainer) on requests
  of 1 and of 100 rows, and what loading it costs once (shap's import, the estimator);
- the drift histogram's count (`predictor.model.drift.FeatureHistogram`): `DRIFT_REQUESTS`
  requests of 1 and of 100 rows observed, then one scrape (`collect`), all of it divided
  by the rows: what counting costs per row, amortized as the server pays it.

Rows are real block groups from the training data. Each figure is the best of `--repeats`
timed calls (CPU time of this thread, `time.thread_time`), divided by the rows.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

from predictor.model.artifact import load_artifact
from predictor.model.drift import DriftReference, FeatureHistogram

BATCH_SIZES: Final = (1, 100)
DRIFT_REQUESTS: Final = 20_000
DEFAULT_OUT: Final = Path("perf/results/row-costs.json")


def best_us_per_row(work: Callable[[np.ndarray], Any], rows: np.ndarray, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.thread_time()
        work(rows)
        best = min(best, time.thread_time() - start)
    return best / len(rows) * 1e6


def drift_us_per_row(histogram: FeatureHistogram, batch: np.ndarray, repeats: int) -> float:
    requests = max(1, DRIFT_REQUESTS // len(batch))

    def serve_and_scrape(rows: np.ndarray) -> None:
        for _ in range(requests):
            histogram.observe(rows)
        list(histogram.collect())

    return best_us_per_row(serve_and_scrape, batch, repeats) / requests


def measure(model_dir: Path, rows: np.ndarray, repeats: int) -> dict[str, Any]:
    artifact = load_artifact(model_dir)
    started = time.perf_counter()
    from predictor.model.explain import TreeShap  # shap's import is part of what is measured

    explainer = TreeShap(artifact.estimator)
    load_s = time.perf_counter() - started
    reference = DriftReference.from_metadata(artifact.metadata)
    if reference is None:
        raise SystemExit(f"{model_dir}/metadata.json has no training deciles: retrain it")
    histogram = FeatureHistogram(reference, "bench")
    results: dict[str, Any] = {"explainer_load_s": load_s, "repeats": repeats}
    for n in BATCH_SIZES:
        batch = np.ascontiguousarray(rows[:n])
        results[f"treeshap_us_per_row_{n}"] = best_us_per_row(
            explainer.contributions, batch, repeats
        )
        results[f"drift_count_us_per_row_{n}"] = drift_us_per_row(histogram, batch, repeats)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf.row_costs", description=__doc__)
    parser.add_argument("--model_dir", type=Path, required=True)
    parser.add_argument("--data", type=Path, help="cal_housing.data (default: $HOUSING_DATA)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    from predictor.train import load_sklearn, load_statlib

    path = args.data or (
        Path(os.environ["HOUSING_DATA"]) if os.environ.get("HOUSING_DATA") else None
    )
    data = load_statlib(path) if path else load_sklearn()
    pick = np.random.default_rng(0).choice(len(data.features), size=max(BATCH_SIZES))
    results = measure(args.model_dir, data.features[pick], args.repeats)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    for name, value in results.items():
        print(f"{name}: {value:.3f}" if isinstance(value, float) else f"{name}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
