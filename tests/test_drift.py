"""Drift: training deciles in the metadata, and the served inputs' histogram over them."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from harness.server import ServerProcess
from predictor.model.drift import (
    FLUSH_ROWS,
    HISTOGRAM_NAME,
    SHARE_NAME,
    DriftReference,
    FeatureHistogram,
    reference,
)
from predictor.protocol.schema import FEATURES
from predictor.train import load_statlib


def _rows(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = rng.lognormal(size=(n, len(FEATURES)))
    rows[:, 1] = rng.integers(1, 53, size=n)  # HouseAge: whole years, many ties
    return rows


def test_reference_holds_deciles_and_training_shares(data_path: Path) -> None:
    features = load_statlib(data_path).features
    entry = reference(features)
    for column, name in enumerate(FEATURES):
        bounds = np.array(entry["boundaries"][name])
        shares = np.array(entry["shares"][name])
        assert np.all(np.diff(bounds) > 0)
        assert len(shares) == len(bounds) + 1 and shares.sum() == pytest.approx(1.0)
        # Each share is the training rows counted as Prometheus counts: value <= le.
        below = [(features[:, column] <= b).mean() for b in bounds]
        np.testing.assert_allclose(np.cumsum(shares)[:-1], below, rtol=1e-12)
    # Continuous features split into tenths; HouseAge's ties (52 years: 6%) do not.
    np.testing.assert_allclose(entry["shares"]["MedInc"], [0.1] * 10, atol=1e-3)
    assert max(entry["shares"]["HouseAge"]) > 0.11


def test_histogram_counts_as_prometheus_client_does() -> None:
    """Counting gives the buckets of one `observe` per value, boundary values included (a
    value equal to a bound belongs to that bound's bucket), however requests are split."""
    train = _rows(1, 5000)
    drift = DriftReference.from_metadata({"drift": reference(train)})
    assert drift is not None
    served = np.vstack([_rows(2, FLUSH_ROWS + 300), [b[0] for b in drift.boundaries]])
    histogram = FeatureHistogram(drift, "abc")
    histogram.observe(served[:7])
    histogram.observe(served[7:FLUSH_ROWS])  # counted now: FLUSH_ROWS are waiting
    histogram.observe(served[FLUSH_ROWS:])  # counted at the scrape
    ours = {m.name: m for m in histogram.collect()}[HISTOGRAM_NAME]
    registry = CollectorRegistry()
    for column, name in enumerate(FEATURES):
        reference_histogram = Histogram(
            f"ref_{name}", "", buckets=drift.boundaries[column], registry=registry
        )
        for value in served[:, column]:
            reference_histogram.observe(value)
        expected = {
            (s.name.removeprefix(f"ref_{name}"), s.labels.get("le")): s.value
            for m in registry.collect()
            if m.name == f"ref_{name}"
            for s in m.samples
            if s.name.endswith("_bucket")  # no _sum (nor _count) is kept: buckets only
        }
        got = {
            (s.name.removeprefix(HISTOGRAM_NAME), s.labels.get("le")): s.value
            for s in ours.samples
            if s.labels["feature"] == name
        }
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, rel=1e-12), (name, key)


def test_exported_shares_name_the_histograms_buckets() -> None:
    drift = DriftReference.from_metadata({"drift": reference(_rows(3, 2000))})
    assert drift is not None
    registry = CollectorRegistry()
    registry.register(FeatureHistogram(drift, "abc"))
    families = {
        f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())
    }
    for name in FEATURES:
        les = [
            s.labels["le"]
            for s in families[HISTOGRAM_NAME].samples
            if s.name.endswith("_bucket") and s.labels["feature"] == name
        ]
        shares = [s for s in families[SHARE_NAME].samples if s.labels["feature"] == name]
        assert les and [s.labels["le"] for s in shares] == les
        assert [s.labels["previous_le"] for s in shares] == ["-Inf", *les[:-1]]
        assert {s.labels["model_version"] for s in shares} == {"abc"}
        assert sum(s.value for s in shares) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "entry",
    [
        {"boundaries": {}, "shares": {}},
        {
            "boundaries": {f: [2.0, 1.0] for f in FEATURES},
            "shares": {f: [0.3, 0.3, 0.4] for f in FEATURES},
        },
        {"boundaries": {f: [1.0] for f in FEATURES}, "shares": {f: [0.5] for f in FEATURES}},
    ],
)
def test_malformed_metadata_is_refused(entry: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="drift"):
        DriftReference.from_metadata({"drift": entry})


def test_trained_model_has_deciles(model_dir: Path) -> None:
    metadata = json.loads((model_dir / "metadata.json").read_text())
    assert DriftReference.from_metadata(metadata) is not None
    assert set(metadata["drift"]["boundaries"]) == set(FEATURES)


def _counts(server: ServerProcess) -> dict[str, float]:
    text = httpx.get(f"{server.base_url}/metrics", timeout=30).text
    [family] = [f for f in text_string_to_metric_families(text) if f.name == HISTOGRAM_NAME]
    # Rows counted: the +Inf bucket (Longitude, whose buckets are negative, has no _count:
    # prometheus_client leaves _sum and _count out of such a histogram, as OpenMetrics asks).
    return {s.labels["feature"]: s.value for s in family.samples if s.labels.get("le") == "+Inf"}


def test_every_route_counts_each_valid_row(
    server: ServerProcess, sample: list[dict[str, float]]
) -> None:
    """Legacy, V1 (objects and arrays), V2 REST: valid rows are counted once each; a request
    that fails validation counts nothing. (gRPC: tests/test_drift_prometheus.py.)"""
    before = _counts(server)
    rows = [{**item, "MedInc": 1.0 + 1e-7 * i} for i, item in enumerate(sample * 3)]
    arrays = [[row[f] for f in FEATURES] for row in rows]
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        assert client.post("/predict", json=rows).status_code == 200
        assert client.post("/v1/models/housing:predict", json={"instances": rows}).is_success
        assert client.post("/v1/models/housing:predict", json={"inputs": arrays}).is_success
        tensor = {"name": "input-0", "datatype": "FP64", "shape": [len(rows), 8], "data": arrays}
        assert client.post("/v2/models/housing/infer", json={"inputs": [tensor]}).is_success
        bad = [*rows[:2], {**rows[0], "MedInc": -1.0}]
        assert client.post("/predict", json=bad).status_code == 422
    after = _counts(server)
    assert set(after) == set(FEATURES)
    assert {f: after[f] - before.get(f, 0.0) for f in FEATURES} == {
        f: 4.0 * len(rows) for f in FEATURES
    }
