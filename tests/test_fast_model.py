"""Parity of the compiled HistGradientBoosting path with scikit-learn, and its fallbacks."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR

from predictor.model import compiled as fast_model
from predictor.model.compiled import (
    FORMAT_VERSION,
    KIND_COMPILED_HGB,
    KIND_SKLEARN,
    PARITY_TOLERANCE,
    CompiledHGBRegressor,
    Regressor,
    SklearnRegressor,
    compile_regressor,
    probe_rows,
)
from predictor.train import load_statlib


@dataclass(frozen=True)
class Split:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass(frozen=True)
class Fitted:
    estimator: HistGradientBoostingRegressor
    fast: Regressor
    reference: np.ndarray  # estimator.predict(split.x_test)


@pytest.fixture(scope="module")
def split(data_path: Path) -> Split:
    data = load_statlib(data_path)
    x, y = np.ascontiguousarray(data.features), data.target
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0)
    return Split(x_train, y_train, np.ascontiguousarray(x_test), y_test)


@pytest.fixture(scope="module")
def fitted(split: Split) -> Fitted:
    estimator = HistGradientBoostingRegressor(random_state=0).fit(split.x_train, split.y_train)
    fast = compile_regressor(estimator)
    return Fitted(estimator, fast, estimator.predict(split.x_test))


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    # NaN-safe: a NaN on either side must make the comparison fail.
    return float(np.max(np.abs(a - b), initial=0.0)) if not np.isnan(a - b).any() else np.inf


def test_hgb_is_compiled(fitted: Fitted) -> None:
    assert fitted.fast.kind == KIND_COMPILED_HGB
    assert isinstance(fitted.fast, CompiledHGBRegressor)
    assert isinstance(fitted.fast, Regressor)
    assert fitted.fast.n_trees == fitted.estimator.n_iter_


def test_parity_on_held_out_set(fitted: Fitted, split: Split) -> None:
    predicted = fitted.fast.predict(split.x_test)
    assert predicted.dtype == np.float64
    assert predicted.shape == (len(split.x_test),)
    assert _max_diff(predicted, fitted.reference) <= PARITY_TOLERANCE


def test_parity_one_row_at_a_time(fitted: Fitted, split: Split) -> None:
    predicted = np.concatenate([fitted.fast.predict(row[None, :]) for row in split.x_test])
    assert _max_diff(predicted, fitted.reference) <= PARITY_TOLERANCE


@pytest.mark.parametrize("size", [2, 3, 11, 12, 13, 64, 1000, 2049, 4100])
def test_parity_in_batches(fitted: Fitted, split: Split, size: int) -> None:
    x = np.resize(split.x_test, (size, split.x_test.shape[1]))
    expected = np.resize(fitted.reference, size)
    assert _max_diff(fitted.fast.predict(x), expected) <= PARITY_TOLERANCE


def _edge_rows(compiled: CompiledHGBRegressor, n_features: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    specials = np.array(
        [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e308, -1e308, 5e-324, -5e-324, 1e-300]
    )
    return np.vstack(
        [
            probe_rows(compiled, n_rows=3000, seed=2),
            rng.choice(specials, size=(500, n_features)),
            rng.normal(0.0, 1e4, size=(500, n_features)),
            np.full((1, n_features), np.nan),
        ]
    )


def test_parity_on_edge_inputs(fitted: Fitted) -> None:
    assert isinstance(fitted.fast, CompiledHGBRegressor)
    x = _edge_rows(fitted.fast, fitted.estimator.n_features_in_)
    expected = fitted.estimator.predict(x)
    assert _max_diff(fitted.fast.predict(x), expected) <= PARITY_TOLERANCE
    one_by_one = np.concatenate([fitted.fast.predict(row[None, :]) for row in x[:400]])
    assert _max_diff(one_by_one, expected[:400]) <= PARITY_TOLERANCE


def test_parity_when_trained_with_missing_values(split: Split) -> None:
    # Missing values at fit time give per-split NaN routing (both directions), and possibly
    # splits that separate only the missing values (infinite thresholds).
    rng = np.random.default_rng(3)
    x = split.x_train.copy()
    x[rng.random(x.shape) < 0.1] = np.nan
    x[:, 2][x[:, 0] > 6] = np.nan  # informative missingness
    estimator = HistGradientBoostingRegressor(max_iter=30, random_state=0).fit(x, split.y_train)
    missing_left = np.concatenate(
        [
            p[0].nodes["missing_go_to_left"][p[0].nodes["is_leaf"] == 0]
            for p in estimator._predictors
        ]
    )
    assert missing_left.any() and not missing_left.all()
    fast = compile_regressor(estimator)
    assert isinstance(fast, CompiledHGBRegressor)
    x_test = split.x_test.copy()
    x_test[rng.random(x_test.shape) < 0.2] = np.nan
    x_test = np.vstack([x_test, _edge_rows(fast, x_test.shape[1])])
    expected = estimator.predict(x_test)
    assert _max_diff(fast.predict(x_test), expected) <= PARITY_TOLERANCE
    one_by_one = np.concatenate([fast.predict(row[None, :]) for row in x_test[:500]])
    assert _max_diff(one_by_one, expected[:500]) <= PARITY_TOLERANCE


@pytest.mark.parametrize("loss", ["absolute_error", "quantile"])
def test_other_identity_link_losses_are_compiled(split: Split, loss: str) -> None:
    quantile = 0.9 if loss == "quantile" else None
    estimator = HistGradientBoostingRegressor(
        loss=loss, quantile=quantile, max_iter=15, random_state=0
    )
    estimator.fit(split.x_train[:3000], split.y_train[:3000])
    fast = compile_regressor(estimator)
    assert fast.kind == KIND_COMPILED_HGB
    assert _max_diff(fast.predict(split.x_test), estimator.predict(split.x_test)) <= 1e-6


def test_trees_with_more_than_32_leaves_use_wide_masks(split: Split) -> None:
    estimator = HistGradientBoostingRegressor(max_leaf_nodes=60, max_iter=10, random_state=0)
    estimator.fit(split.x_train, split.y_train)
    assert max(p[0].get_n_leaf_nodes() for p in estimator._predictors) > 32
    fast = compile_regressor(estimator)
    assert isinstance(fast, CompiledHGBRegressor)
    x = np.vstack([split.x_test, _edge_rows(fast, 8)])
    assert _max_diff(fast.predict(x), estimator.predict(x)) <= PARITY_TOLERANCE
    assert _max_diff(fast.predict(x[:1]), estimator.predict(x[:1])) <= PARITY_TOLERANCE


def _assert_falls_back(estimator: object, x: np.ndarray, reason_part: str) -> None:
    fast = compile_regressor(estimator)
    assert fast.kind == KIND_SKLEARN
    assert isinstance(fast, SklearnRegressor)
    assert fast.estimator is estimator
    assert reason_part in fast.reason
    expected = np.asarray(fast.estimator.predict(x), dtype=np.float64)
    np.testing.assert_array_equal(fast.predict(x), expected)
    with pytest.raises(ValueError):
        CompiledHGBRegressor.from_estimator(estimator)


def test_svr_pipeline_falls_back(split: Split) -> None:
    pipeline = make_pipeline(StandardScaler(), SVR())
    pipeline.fit(split.x_train[:500], split.y_train[:500])
    _assert_falls_back(pipeline, split.x_test[:50], "Pipeline")
    assert compile_regressor(pipeline).predict(split.x_test[:1]).shape == (1,)


def test_categorical_hgb_falls_back(split: Split) -> None:
    x = split.x_train[:3000].copy()
    x[:, 1] = np.floor(x[:, 1] / 10.0)  # HouseAge decade as a category
    estimator = HistGradientBoostingRegressor(
        categorical_features=[1], max_iter=10, random_state=0
    ).fit(x, split.y_train[:3000])
    x_test = split.x_test[:50].copy()
    x_test[:, 1] = np.floor(x_test[:, 1] / 10.0)
    _assert_falls_back(estimator, x_test, "categorical")


def test_log_link_hgb_falls_back(split: Split) -> None:
    estimator = HistGradientBoostingRegressor(loss="poisson", max_iter=10, random_state=0)
    estimator.fit(split.x_train[:3000], split.y_train[:3000])
    _assert_falls_back(estimator, split.x_test[:50], "link")


def test_classifier_falls_back(split: Split) -> None:
    estimator = HistGradientBoostingClassifier(max_iter=5, random_state=0)
    estimator.fit(split.x_train[:2000], split.y_train[:2000] > 2.0)
    _assert_falls_back(estimator, split.x_test[:50], "HistGradientBoostingClassifier")


def test_trees_with_more_than_64_leaves_fall_back(split: Split) -> None:
    estimator = HistGradientBoostingRegressor(max_leaf_nodes=100, max_iter=3, random_state=0)
    estimator.fit(split.x_train, split.y_train)
    assert max(p[0].get_n_leaf_nodes() for p in estimator._predictors) > 64
    _assert_falls_back(estimator, split.x_test[:50], "leaves")


def test_subclass_falls_back(split: Split) -> None:
    class Shifted(HistGradientBoostingRegressor):  # type: ignore[misc]
        def predict(self, X: np.ndarray) -> np.ndarray:
            return np.asarray(super().predict(X)) + 1.0

    estimator = Shifted(max_iter=5, random_state=0).fit(split.x_train[:2000], split.y_train[:2000])
    _assert_falls_back(estimator, split.x_test[:20], "Shifted")


def test_unfitted_hgb_falls_back() -> None:
    fast = compile_regressor(HistGradientBoostingRegressor())
    assert fast.kind == KIND_SKLEARN
    assert isinstance(fast, SklearnRegressor)
    assert "not fitted" in fast.reason


def test_object_without_predict_is_rejected() -> None:
    with pytest.raises(TypeError):
        compile_regressor(object())


def test_failed_self_check_falls_back(fitted: Fitted, monkeypatch: pytest.MonkeyPatch) -> None:
    def wrong(self: CompiledHGBRegressor, X: np.ndarray) -> np.ndarray:
        return np.zeros(len(X))

    monkeypatch.setattr(CompiledHGBRegressor, "predict", wrong)
    fast = compile_regressor(fitted.estimator)
    assert fast.kind == KIND_SKLEARN
    assert isinstance(fast, SklearnRegressor)
    assert "self-check" in fast.reason


def test_compile_error_falls_back(fitted: Fitted, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(fast_model, "_build_tables", broken)
    fast = compile_regressor(fitted.estimator)
    assert isinstance(fast, SklearnRegressor)
    assert "boom" in fast.reason


def test_rejects_wrong_shapes(fitted: Fitted, split: Split) -> None:
    with pytest.raises(ValueError):
        fitted.fast.predict(split.x_test[0])  # 1-D
    with pytest.raises(ValueError):
        fitted.fast.predict(split.x_test[:3, :7])
    assert fitted.fast.predict(np.empty((0, 8))).shape == (0,)


def test_accepts_other_dtypes_and_layouts(fitted: Fitted, split: Split) -> None:
    x = split.x_test[:100]
    expected = fitted.estimator.predict(x.astype(np.float32))
    got = fitted.fast.predict(x.astype(np.float32))
    assert _max_diff(got, expected) <= PARITY_TOLERANCE
    fortran = np.asfortranarray(x)
    assert _max_diff(fitted.fast.predict(fortran), fitted.reference[:100]) <= PARITY_TOLERANCE
    strided = split.x_test[::7]
    assert _max_diff(fitted.fast.predict(strided), fitted.reference[::7]) <= PARITY_TOLERANCE


def test_concurrent_calls_agree(fitted: Fitted, split: Split) -> None:
    chunks = [split.x_test[i : i + n] for i, n in enumerate([1, 5, 40, 300, 1, 13] * 20)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(fitted.fast.predict, chunks))
    for i, (chunk, got) in enumerate(zip(chunks, results, strict=True)):
        assert _max_diff(got, fitted.reference[i : i + len(chunk)]) <= PARITY_TOLERANCE


# -- saved tables -----------------------------------------------------------------------------


def test_saved_tables_predict_bit_identically(fitted: Fitted, split: Split, tmp_path: Path) -> None:
    assert isinstance(fitted.fast, CompiledHGBRegressor)
    path = tmp_path / "compiled.npz"
    fitted.fast.save(path)
    loaded = CompiledHGBRegressor.load(path)
    assert repr(loaded) == repr(fitted.fast)
    np.testing.assert_array_equal(loaded.predict(split.x_test), fitted.reference)
    one_by_one = np.concatenate([loaded.predict(row[None, :]) for row in split.x_test[:300]])
    np.testing.assert_array_equal(one_by_one, fitted.reference[:300])
    edge = _edge_rows(fitted.fast, split.x_test.shape[1])
    np.testing.assert_array_equal(loaded.predict(edge), fitted.fast.predict(edge))


def test_saved_wide_masks_round_trip(split: Split, tmp_path: Path) -> None:
    estimator = HistGradientBoostingRegressor(max_leaf_nodes=60, max_iter=5, random_state=0)
    estimator.fit(split.x_train, split.y_train)
    fast = compile_regressor(estimator)
    assert isinstance(fast, CompiledHGBRegressor)
    fast.save(tmp_path / "wide.npz")
    loaded = CompiledHGBRegressor.load(tmp_path / "wide.npz")
    np.testing.assert_array_equal(loaded.predict(split.x_test), estimator.predict(split.x_test))


def _saved_arrays(compiled: CompiledHGBRegressor, tmp_path: Path) -> dict[str, np.ndarray]:
    compiled.save(tmp_path / "good.npz")
    with np.load(tmp_path / "good.npz") as npz:
        return {name: npz[name] for name in npz.files}


def _without(arrays: dict[str, np.ndarray], name: str) -> dict[str, np.ndarray]:
    return {k: v for k, v in arrays.items() if k != name}


def _unsorted(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    thresholds = arrays["thresholds"].copy()
    thresholds[:2] = thresholds[1::-1]
    return {**arrays, "thresholds": thresholds}


Damage = Callable[[dict[str, np.ndarray]], dict[str, Any]]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda a: {**a, "format_version": np.int64(FORMAT_VERSION + 1)},
            f"format version {FORMAT_VERSION + 1}",
        ),
        (lambda a: _without(a, "values"), "'values' is missing"),
        (lambda a: {**a, "masks": a["masks"][:-1]}, "masks have shape"),
        (lambda a: {**a, "masks": a["masks"].astype(np.int32)}, "uint32/uint64"),
        (lambda a: {**a, "values": a["values"][:-1]}, "leaf values"),
        (lambda a: {**a, "nan_rows": a["nan_rows"] + 1}, "'nan_rows' does not match"),
        (lambda a: {**a, "shift": np.array(3, dtype=a["masks"].dtype)}, "'shift' does not match"),
        (_unsorted, "sorted"),
        (lambda a: {**a, "n_trees": np.float64(3.0)}, "'n_trees' must be an integer"),
        (lambda a: {**a, "values": a["values"].astype(object)}, "not a compiled-model file"),
    ],
)
def test_load_rejects_inconsistent_tables(
    fitted: Fitted, tmp_path: Path, damage: Damage, message: str
) -> None:
    assert isinstance(fitted.fast, CompiledHGBRegressor)
    bad = tmp_path / "bad.npz"
    with bad.open("wb") as f:
        np.savez(f, **damage(_saved_arrays(fitted.fast, tmp_path)))
    with pytest.raises(ValueError, match=message):
        CompiledHGBRegressor.load(bad)


@pytest.mark.parametrize("content", ["empty", "garbage", "truncated", "npy"])
def test_load_rejects_files_that_are_not_saved_tables(
    fitted: Fitted, tmp_path: Path, content: str
) -> None:
    assert isinstance(fitted.fast, CompiledHGBRegressor)
    good = tmp_path / "good.npz"
    fitted.fast.save(good)
    bad = tmp_path / "bad.npz"
    if content == "empty":
        bad.write_bytes(b"")
    elif content == "garbage":
        bad.write_bytes(b"not a zip file at all")
    elif content == "truncated":
        bad.write_bytes(good.read_bytes()[:5000])
    else:
        with bad.open("wb") as f:
            np.save(f, np.zeros(3))
    with pytest.raises(ValueError, match="not a compiled-model file"):
        CompiledHGBRegressor.load(bad)
