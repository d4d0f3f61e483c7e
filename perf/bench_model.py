"""Benchmark the fast model path (predictor.model.compiled) against scikit-learn's predict.

    python perf/bench_model.py [--data PATH] [--model_dir DIR] [--out results.json]

Trains the production estimator (``predictor.train.build_estimator``) on the seeded training
split of the raw StatLib file, or loads ``DIR/model.joblib``; then, on the held-out split:

* parity: max |fast - sklearn| over the whole held-out set, predicted as one batch and one
  row at a time (the compiled path is meant to be bit-identical);
* latency: median wall time per ``predict`` call for 1, 10, 100 and 1000 rows, scikit-learn
  vs the fast path, timed with ``time.perf_counter`` in interleaved repetitions (so that load
  from other processes hits both sides alike), and the speed-up ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn
from sklearn.model_selection import train_test_split

from harness.paths import REPO
from predictor.model.compiled import compile_regressor
from predictor.train import SEED, TEST_SIZE, build_estimator, load_statlib

DEFAULT_DATA = REPO.parent / "shared" / "data" / "cal_housing.data"
DEFAULT_ROWS = (1, 10, 100, 1000)

Predict = Callable[[np.ndarray], Any]


def _per_call_seconds(predict: Predict, x: np.ndarray, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        predict(x)
    return (time.perf_counter() - start) / calls


def time_pair(
    reference: Predict, fast: Predict, x: np.ndarray, min_time: float
) -> tuple[float, float, int]:
    """Median seconds per call of ``reference`` and ``fast`` on ``x``, and the repetitions.

    Each repetition times one call of each (order alternating); the number of repetitions is
    chosen so that the slower side runs for about ``min_time`` seconds (at least 15 calls).
    """
    for _ in range(3):  # warm up
        reference(x)
        fast(x)
    slowest = max(_per_call_seconds(reference, x, 3), _per_call_seconds(fast, x, 3))
    reps = int(min(20_000, max(15, min_time / max(slowest, 1e-7))))
    ref_times: list[float] = []
    fast_times: list[float] = []
    for i in range(reps):
        order = ((reference, ref_times), (fast, fast_times))
        for predict, times in order if i % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            predict(x)
            times.append(time.perf_counter() - start)
    return statistics.median(ref_times), statistics.median(fast_times), reps


def rows_of(x: np.ndarray, n: int) -> np.ndarray:
    return np.ascontiguousarray(np.resize(x, (n, x.shape[1])))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("HOUSING_DATA") or DEFAULT_DATA),
        help="Raw StatLib cal_housing.data (default: $HOUSING_DATA, else ../shared/data/).",
    )
    parser.add_argument(
        "--model_dir", type=Path, default=None, help="Load DIR/model.joblib instead of training."
    )
    parser.add_argument("--estimator", choices=("hgb", "svr"), default="hgb")
    parser.add_argument("--out", type=Path, default=None, help="Also write the results as JSON.")
    parser.add_argument(
        "--rows", default=",".join(map(str, DEFAULT_ROWS)), help="Comma-separated batch sizes."
    )
    parser.add_argument(
        "--min_time", type=float, default=1.0, help="Seconds of timing per batch size and side."
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    batch_sizes = [int(v) for v in args.rows.split(",") if v.strip()]

    data = load_statlib(args.data)
    x_train, x_test, y_train, _ = train_test_split(
        data.features, data.target, test_size=TEST_SIZE, random_state=SEED
    )
    x_test = np.ascontiguousarray(x_test, dtype=np.float64)
    if args.model_dir is not None:
        model_path = args.model_dir / "model.joblib"
        estimator = joblib.load(model_path)
        model_source = str(model_path)
    else:
        estimator = build_estimator(args.estimator)
        start = time.perf_counter()
        estimator.fit(x_train, y_train)
        model_source = f"trained {args.estimator} in {time.perf_counter() - start:.1f}s"

    start = time.perf_counter()
    fast = compile_regressor(estimator)
    compile_ms = (time.perf_counter() - start) * 1e3
    print(f"model: {type(estimator).__name__} ({model_source}); fast path: {fast!r}")
    print(f"compile_regressor: {compile_ms:.1f} ms, kind={fast.kind}")

    reference = np.asarray(estimator.predict(x_test), dtype=np.float64)
    batch = fast.predict(x_test)
    single = np.concatenate([fast.predict(x_test[i : i + 1]) for i in range(len(x_test))])
    parity = {
        "held_out_rows": len(x_test),
        "max_abs_diff_batch": float(np.max(np.abs(batch - reference))),
        "max_abs_diff_single_row": float(np.max(np.abs(single - reference))),
        "bit_identical": bool(np.array_equal(batch, reference))
        and bool(np.array_equal(single, reference)),
    }
    print(
        f"parity on {parity['held_out_rows']} held-out rows: max|diff| batch "
        f"{parity['max_abs_diff_batch']:.3g}, one row at a time "
        f"{parity['max_abs_diff_single_row']:.3g}, bit-identical {parity['bit_identical']}"
    )

    latency = []
    print(f"{'rows':>6} {'sklearn us':>12} {'fast us':>10} {'speed-up':>9} {'reps':>6}")
    for n in batch_sizes:
        x = rows_of(x_test, n)
        ref_s, fast_s, reps = time_pair(estimator.predict, fast.predict, x, args.min_time)
        latency.append(
            {
                "rows": n,
                "sklearn_us_median": ref_s * 1e6,
                "fast_us_median": fast_s * 1e6,
                "speedup": ref_s / fast_s,
                "reps": reps,
            }
        )
        print(
            f"{n:>6} {ref_s * 1e6:>12.1f} {fast_s * 1e6:>10.1f} {ref_s / fast_s:>8.1f}x {reps:>6}"
        )

    results = {
        "model": {"estimator": type(estimator).__name__, "source": model_source},
        "fast_path": {"kind": fast.kind, "repr": repr(fast), "compile_ms": compile_ms},
        "parity": parity,
        "latency": latency,
        "environment": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scikit-learn": sklearn.__version__,
            "cpu_count": os.cpu_count(),
            "machine": platform.machine(),
        },
    }
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
