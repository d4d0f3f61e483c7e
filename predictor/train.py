"""Train the house-price regressor and write it, with its metadata, to a model directory.

    python -m predictor.train --model_dir DIR [--data PATH] [--estimator hgb|svr]

By default the data comes from `sklearn.datasets.fetch_california_housing()` (needs
internet once). `--data PATH` (or the `HOUSING_DATA` variable) reads the raw StatLib
`cal_housing.data` file instead, turned into exactly the features scikit-learn builds.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import sklearn
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR

from predictor.model import drift
from predictor.model.artifact import save_artifact, short_version
from predictor.protocol.schema import FEATURES

SEED: Final = 42
TEST_SIZE: Final = 0.2
ESTIMATORS: Final = ("hgb", "svr")


@dataclass(frozen=True)
class Dataset:
    features: np.ndarray
    target: np.ndarray
    source: str


def load_statlib(path: Path) -> Dataset:
    """Read the raw StatLib table and derive scikit-learn's 8 features and target from it."""
    raw = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64)
    if raw.ndim != 2 or raw.shape[1] != 9:
        raise ValueError(f"{path}: expected 9 comma-separated columns, got shape {raw.shape}")
    (longitude, latitude, age, rooms, bedrooms, population, households, income, value) = raw.T
    features = np.column_stack(
        [
            income,
            age,
            rooms / households,
            bedrooms / households,
            population,
            population / households,
            latitude,
            longitude,
        ]
    )
    return Dataset(features, value / 100_000.0, f"statlib:{path.name}")


class DataUnavailableError(RuntimeError):
    """Neither a data file nor scikit-learn's download could provide the training data."""


def load_sklearn() -> Dataset:
    """scikit-learn's copy (cached in ~/scikit_learn_data after the first download)."""
    from sklearn.datasets import fetch_california_housing

    try:
        bunch = fetch_california_housing()
    except OSError as e:  # urllib's URLError and socket errors are OSErrors
        raise DataUnavailableError(
            "no data file was given (--data PATH or HOUSING_DATA) and scikit-learn could not "
            f"download the California housing data ({e}); pass --data PATH to the StatLib "
            "file cal_housing.data, or train once where the internet is reachable"
        ) from e
    if list(bunch.feature_names) != list(FEATURES):
        raise ValueError(f"unexpected feature names {bunch.feature_names}")
    return Dataset(np.asarray(bunch.data, dtype=np.float64), bunch.target, "sklearn")


def build_estimator(name: str) -> HistGradientBoostingRegressor | Pipeline:
    if name == "hgb":
        # 400 trees, every one of them: early stopping (on by default above 10,000 rows) stops
        # at about 160 on a 10% split of the training rows and leaves held-out R2 at 0.843;
        # all 400 reach 0.854. Each tree keeps the default 31 leaves, so the compiled fast
        # path (at most 64 leaves per tree) still applies.
        return HistGradientBoostingRegressor(
            max_iter=400, learning_rate=0.1, early_stopping=False, random_state=SEED
        )
    if name == "svr":
        # The original lab's model: scaled features, RBF support vector regression.
        return make_pipeline(StandardScaler(), SVR(C=1.0, epsilon=0.1))
    raise ValueError(f"unknown estimator {name!r}; choose one of {ESTIMATORS}")


def _subsample(data: Dataset, max_rows: int | None) -> Dataset:
    if max_rows is None or max_rows >= len(data.target):
        return data
    pick = np.random.default_rng(SEED).choice(len(data.target), size=max_rows, replace=False)
    return Dataset(data.features[pick], data.target[pick], data.source)


def train(
    data: Dataset, estimator_name: str, max_rows: int | None = None
) -> tuple[Any, dict[str, Any]]:
    """Fit on a seeded split; return the estimator and its metadata (metrics on held-out)."""
    data = _subsample(data, max_rows)
    x_train, x_test, y_train, y_test = train_test_split(
        data.features, data.target, test_size=TEST_SIZE, random_state=SEED
    )
    estimator = build_estimator(estimator_name)
    estimator.fit(x_train, y_train)
    predicted = estimator.predict(x_test)
    metrics = {
        "r2": float(r2_score(y_test, predicted)),
        "mae": float(mean_absolute_error(y_test, predicted)),
        "rmse": float(np.sqrt(mean_squared_error(y_test, predicted))),
    }
    metadata = {
        "estimator": estimator_name,
        "features": list(FEATURES),
        "target": "MedHouseVal (100k USD)",
        "metrics_held_out": metrics,
        "rows": {"train": len(y_train), "held_out": len(y_test)},
        "split": {"test_size": TEST_SIZE, "random_state": SEED},
        "data_source": data.source,
        drift.METADATA_KEY: drift.reference(x_train),
        "versions": {
            "python": platform.python_version(),
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
        },
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return estimator, metadata


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m predictor.train", description=__doc__)
    parser.add_argument("--model_dir", type=Path, required=True, help="Where to write the model.")
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="Raw StatLib cal_housing.data; defaults to $HOUSING_DATA, else scikit-learn's fetch.",
    )
    parser.add_argument("--estimator", choices=ESTIMATORS, default="hgb")
    parser.add_argument(
        "--max_rows", type=int, default=None, help="Train on a seeded sample of this many rows."
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    data_path = args.data or (
        Path(os.environ["HOUSING_DATA"]) if os.environ.get("HOUSING_DATA") else None
    )
    if data_path is not None and not data_path.is_file():
        print(f"python -m predictor.train: {data_path}: no such data file", file=sys.stderr)
        return 2
    try:
        data = load_statlib(data_path) if data_path else load_sklearn()
    except DataUnavailableError as e:
        print(f"python -m predictor.train: {e}", file=sys.stderr)
        return 2
    estimator, metadata = train(data, args.estimator, args.max_rows)
    written = save_artifact(args.model_dir, estimator, metadata)
    metrics = written["metrics_held_out"]
    print(
        f"trained {args.estimator} on {metadata['rows']['train']} rows ({data.source}); "
        f"held-out R2={metrics['r2']:.4f} MAE={metrics['mae']:.4f} RMSE={metrics['rmse']:.4f}; "
        f"wrote {args.model_dir} (model version {short_version(written['model_version'])})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
