"""The trees of a fitted scikit-learn `HistGradientBoostingRegressor`, read from its internals.

scikit-learn keeps a fitted model's trees in `_predictors` (one list of `TreePredictor`
per iteration, whose `nodes` is a structured array) and its starting value in
`_baseline_prediction`; neither is public. predictor.model.compiled compiles them into its
own tables; this is the one place that reads them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt


def hgb_trees(estimator: Any) -> tuple[list[npt.NDArray[Any]], float]:
    """The node arrays of every tree (one per iteration), and the baseline prediction."""
    trees = [iteration[0].nodes for iteration in estimator._predictors]
    baseline = float(np.asarray(estimator._baseline_prediction, dtype=np.float64).ravel()[0])
    return trees, baseline


def _walk(nodes: npt.NDArray[Any], row: npt.NDArray[np.float64]) -> float:
    node = nodes[0]
    while not node["is_leaf"]:
        value = row[node["feature_idx"]]
        left = node["missing_go_to_left"] if np.isnan(value) else value <= node["num_threshold"]
        node = nodes[node["left"] if left else node["right"]]
    return float(node["value"])


def check_upstream() -> None:
    """What this module relies on: the baseline plus each tree's leaf, found by walking
    `nodes` (`feature_idx`, `num_threshold`, `missing_go_to_left`, `left`, `right`,
    `is_leaf`, `value`), is the model's prediction."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    x[::7, 1] = np.nan
    model = HistGradientBoostingRegressor(max_iter=5, random_state=0).fit(x, x[:, 0] * 2)
    trees, baseline = hgb_trees(model)
    assert len(trees) == model.n_iter_, "one tree per iteration"
    walked = [baseline + sum(_walk(nodes, row) for nodes in trees) for row in x[:20]]
    np.testing.assert_allclose(walked, model.predict(x[:20]), rtol=1e-12)
