"""Training: the StatLib loader, both estimators, the artifact and its metadata."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.server import REPO
from predictor.model.artifact import load_artifact, sha256_file
from predictor.protocol.schema import FEATURES
from predictor.train import load_statlib, train


def test_statlib_rows_become_sklearns_features(data_path: Path) -> None:
    data = load_statlib(data_path)
    assert data.features.shape == (20640, 8)
    assert data.target.shape == (20640,)
    # First block group of the table, as scikit-learn's fetch_california_housing gives it.
    expected = [
        8.3252,
        41.0,
        6.984126984126984,
        1.0238095238095237,
        322.0,
        2.5555555555555554,
        37.88,
        -122.23,
    ]
    np.testing.assert_allclose(data.features[0], expected, rtol=1e-12)
    assert data.target[0] == pytest.approx(4.526)


def test_default_model_metadata_and_quality(model_dir: Path) -> None:
    metadata = json.loads((model_dir / "metadata.json").read_text())
    assert metadata["model_version"] == sha256_file(model_dir / "model.joblib")
    assert metadata["estimator"] == "hgb"
    assert metadata["features"] == list(FEATURES)
    assert metadata["metrics_held_out"]["r2"] >= 0.85
    assert metadata["rows"] == {"train": 16512, "held_out": 4128}
    assert {"scikit-learn", "numpy", "python"} <= set(metadata["versions"])
    assert metadata["trained_at"]


def test_training_is_deterministic(data_path: Path) -> None:
    data = load_statlib(data_path)
    first, meta1 = train(data, "hgb", max_rows=3000)
    second, meta2 = train(data, "hgb", max_rows=3000)
    assert meta1["metrics_held_out"] == meta2["metrics_held_out"]
    np.testing.assert_array_equal(
        first.predict(data.features[:50]), second.predict(data.features[:50])
    )


def test_svr_estimator_trains_and_loads(tmp_path: Path, data_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "predictor.train",
            "--model_dir",
            str(tmp_path),
            "--estimator",
            "svr",
            "--max_rows",
            "3000",
        ],
        check=True,
        cwd=REPO,
        env={"HOUSING_DATA": str(data_path), "PATH": "/usr/bin:/bin"},
    )
    artifact = load_artifact(tmp_path)
    assert artifact.metadata["estimator"] == "svr"
    assert artifact.metadata["compiled"] is None  # no fast path: nothing compiled to load
    assert not (tmp_path / "compiled.npz").exists()
    assert artifact.metadata["metrics_held_out"]["r2"] > 0.6
    prediction = artifact.estimator.predict(load_statlib(data_path).features[:1])
    assert prediction.shape == (1,)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_training_without_data_or_internet_says_what_to_do(tmp_path: Path) -> None:
    """No data file and no way to download scikit-learn's copy: a clear message, no traceback.
    (The download goes through a proxy that refuses connections, as offline.)"""
    proxy = closed_port_url()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"HOUSING_DATA", "NO_PROXY", "no_proxy"}
    }
    env |= {"https_proxy": proxy, "http_proxy": proxy, "HTTPS_PROXY": proxy, "HTTP_PROXY": proxy}
    env["SCIKIT_LEARN_DATA"] = str(tmp_path / "sklearn-data")
    result = subprocess.run(
        [sys.executable, "-m", "predictor.train", "--model_dir", str(tmp_path / "m")],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "--data PATH" in result.stderr and "could not download" in result.stderr
    assert not (tmp_path / "m").exists()


def test_training_from_a_missing_file_says_so(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.data"
    result = subprocess.run(
        [sys.executable, "-m", "predictor.train", "--model_dir", str(tmp_path / "m"),
         "--data", str(missing)],
        capture_output=True, text=True, cwd=REPO, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == f"python -m predictor.train: {missing}: no such data file"
