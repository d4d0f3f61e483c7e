"""Cold start: the trained model directory serves from its compiled tables, without sklearn.

The tables were checked against scikit-learn when training wrote them; a directory whose
tables are missing or do not match its metadata falls back to the estimator, loudly.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR

from harness.server import REPO
from predictor.model.artifact import (
    COMPILED_NAME,
    METADATA_NAME,
    LoadPath,
    load_artifact,
    load_serving_model,
    save_artifact,
    sha256_file,
)
from predictor.model.compiled import KIND_COMPILED_HGB, KIND_SKLEARN
from predictor.train import SEED, TEST_SIZE, load_statlib


@pytest.fixture(scope="module")
def held_out(data_path: Path) -> np.ndarray:
    """The rows training held out (same split as `predictor.train`)."""
    data = load_statlib(data_path)
    _, x_test = train_test_split(data.features, test_size=TEST_SIZE, random_state=SEED)
    return np.ascontiguousarray(x_test)


@pytest.fixture(scope="module")
def reference(model_dir: Path, held_out: np.ndarray) -> np.ndarray:
    """scikit-learn's own predictions on the held-out rows."""
    return np.asarray(load_artifact(model_dir).estimator.predict(held_out))


def test_training_writes_the_compiled_tables(model_dir: Path) -> None:
    metadata = json.loads((model_dir / METADATA_NAME).read_text())
    assert metadata["compiled"] == {
        "file": COMPILED_NAME,
        "sha256": sha256_file(model_dir / COMPILED_NAME),
        "kind": KIND_COMPILED_HGB,
    }


def test_serves_from_the_compiled_tables(
    model_dir: Path, held_out: np.ndarray, reference: np.ndarray
) -> None:
    served = load_serving_model(model_dir)
    assert served.path is LoadPath.COMPILED_FILE
    assert served.regressor.kind == KIND_COMPILED_HGB
    assert served.version == sha256_file(model_dir / "model.joblib")
    np.testing.assert_array_equal(served.regressor.predict(held_out), reference)


def test_loading_the_served_model_imports_no_sklearn(model_dir: Path) -> None:
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from predictor.cache.tiers import LocalCache\n"
        "from predictor.model.housing import HousingModel\n"
        "model = HousingModel('housing', Path(sys.argv[1]), LocalCache(10, 60), 10)\n"
        "assert model.load()\n"
        "print('sklearn' in sys.modules, 'joblib' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(model_dir)],
        check=True,
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.stdout.split() == ["False", "False"]


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("tamper", "has sha256"),
        ("remove", "is missing"),
        ("malformed", "not a compiled-model file"),
        ("unknown_kind", "unknown compiled entry"),
    ],
)
def test_unusable_tables_fall_back_to_the_estimator(
    model_dir: Path,
    tmp_path: Path,
    held_out: np.ndarray,
    reference: np.ndarray,
    caplog: pytest.LogCaptureFixture,
    damage: str,
    reason: str,
) -> None:
    directory = Path(shutil.copytree(model_dir, tmp_path / "m"))
    compiled = directory / COMPILED_NAME
    metadata = json.loads((directory / METADATA_NAME).read_text())
    if damage == "tamper":
        data = bytearray(compiled.read_bytes())
        data[-100] ^= 0xFF
        compiled.write_bytes(bytes(data))
    elif damage == "remove":
        compiled.unlink()
    elif damage == "malformed":  # a file the metadata vouches for, but not saved tables
        compiled.write_bytes(b"not an npz")
        metadata["compiled"]["sha256"] = sha256_file(compiled)
    elif damage == "unknown_kind":
        metadata["compiled"]["kind"] = "onnx"
    (directory / METADATA_NAME).write_text(json.dumps(metadata))
    with caplog.at_level(logging.WARNING, logger="predictor.model.artifact"):
        served = load_serving_model(directory)
    assert served.path is LoadPath.COMPILED_AT_LOAD
    assert served.regressor.kind == KIND_COMPILED_HGB
    assert reason in caplog.text
    np.testing.assert_array_equal(served.regressor.predict(held_out), reference)


def test_estimators_without_a_fast_path_load_via_sklearn(
    model_dir: Path, tmp_path: Path, held_out: np.ndarray
) -> None:
    # Written over a copy of the hgb directory: its compiled tables must not survive.
    directory = Path(shutil.copytree(model_dir, tmp_path / "svr"))
    estimator = make_pipeline(StandardScaler(), SVR())
    estimator.fit(held_out[:300], held_out[:300, 0])
    metadata = json.loads((model_dir / METADATA_NAME).read_text())
    written = save_artifact(directory, estimator, {**metadata, "estimator": "svr"})
    assert written["compiled"] is None
    assert not (directory / COMPILED_NAME).exists()
    served = load_serving_model(directory)
    assert served.path is LoadPath.SKLEARN
    assert served.regressor.kind == KIND_SKLEARN
    np.testing.assert_array_equal(
        served.regressor.predict(held_out[:50]), estimator.predict(held_out[:50])
    )
