"""A regressor that takes a fixed time per call: a slowed model for shutdown and overload tests.

It is pickled into a model directory and loaded by the real server, which imports this
module from the repository root (its working directory).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from predictor.model.artifact import save_artifact
from predictor.protocol.schema import FEATURES


class SlowRegressor:
    """Predicts a constant per row, after sleeping `seconds` (in the server's worker thread)."""

    def __init__(self, seconds: float, value: float = 2.0) -> None:
        self.seconds = seconds
        self.value = value

    def predict(self, rows: np.ndarray) -> np.ndarray:
        time.sleep(self.seconds)
        return np.full(len(rows), self.value)


def write_slow_model(directory: Path, seconds: float) -> Path:
    metadata: dict[str, Any] = {"estimator": "slow-test-double", "features": list(FEATURES)}
    save_artifact(directory, SlowRegressor(seconds), metadata)
    return directory
