"""Exact per-row explanations of the served gradient-boosting model: path-dependent TreeSHAP.

`shap.TreeExplainer` on the HistGradientBoostingRegressor itself (no background data: the
trees' own training covers weigh each path), so each row's 8 contributions plus the base
value (the model's mean output over its training data) sum to its prediction.

Lazy: neither shap (which imports numba and LLVM) nor the pickled estimator (scikit-learn)
is loaded before the first explanation; then both are, once, in a worker thread, while the
server keeps answering predictions. A cold start (Knative scales from zero) costs the same
as before; the first explanation of a pod costs that load (`ExplainerLoader`).

Explanations are cached per row like predictions: the same canonical row digest, under the
`<prefix>:shap` namespace, one entry per feature (a cache holds floats), in every tier.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from predictor.cache.keys import cache_key
from predictor.cache.tiers import PredictionCache
from predictor.protocol.schema import FEATURES, N_FEATURES

# Estimators (the `estimator` of metadata.json) whose explanations are exact TreeSHAP.
EXPLAINABLE: Final = ("hgb",)
# shap's C code holds the GIL for a whole call, about 1-2 ms per row on this model (400
# trees of 31 leaves, up to 18 deep): explanations run in a worker thread, this many rows
# per call, so the event loop gets the GIL back between calls (within milliseconds).
CHUNK_ROWS: Final = 4


class NotExplainable(NotImplementedError):
    """The served estimator has no exact explanation: the explain routes answer 501."""

    def __init__(self, estimator: str) -> None:
        self.reason = (
            f"explanations need a tree model: only {', '.join(EXPLAINABLE)} "
            f"(HistGradientBoostingRegressor, TreeSHAP) explains; this model is {estimator!r}"
        )
        """What kserve's gRPC interceptor sends with UNIMPLEMENTED (it reads `reason`)."""
        super().__init__(self.reason)


class TreeShap:
    """shap's path-dependent TreeExplainer on one fitted tree ensemble."""

    def __init__(self, estimator: Any) -> None:
        import shap  # heavy (numba, LLVM): only here, off the event loop

        self._explainer = shap.TreeExplainer(estimator, feature_perturbation="tree_path_dependent")
        self.base_value = float(np.ravel(self._explainer.expected_value)[0])

    def contributions(self, rows: np.ndarray) -> np.ndarray:
        """(n, 8) contributions of float64 (n, 8) rows, `CHUNK_ROWS` rows per shap call."""
        # shap would check additivity by running scikit-learn's predict on every call; the
        # sum is tested once instead (tests/test_explain.py), not paid per request.
        chunks = [
            self._explainer.shap_values(rows[start : start + CHUNK_ROWS], check_additivity=False)
            for start in range(0, len(rows), CHUNK_ROWS)
        ]
        return np.asarray(np.vstack(chunks), dtype=np.float64).reshape(len(rows), N_FEATURES)


class ExplainerLoader:
    """Builds the explainer on first use: once, in a worker thread, shared by every caller.

    A failed load is not remembered: the next explanation tries again.
    """

    def __init__(self, estimator: str, build: Callable[[], TreeShap]) -> None:
        self.estimator = estimator
        self._build = build
        self._explainer: TreeShap | None = None
        self._loading: asyncio.Future[TreeShap] | None = None

    async def get(self) -> TreeShap:
        if self._explainer is not None:
            return self._explainer
        self.check()
        if self._loading is None:
            self._loading = asyncio.ensure_future(asyncio.to_thread(self._build))
        loading = self._loading
        try:
            self._explainer = await asyncio.shield(loading)
        except Exception:
            if self._loading is loading:
                self._loading = None
            raise
        return self._explainer

    def check(self) -> None:
        """Raise `NotExplainable` at once for a model that cannot explain."""
        if self.estimator not in EXPLAINABLE:
            raise NotExplainable(self.estimator)


@dataclass(frozen=True)
class Explanations:
    """Rows' explanations: with the base value, each row's contributions sum to its
    prediction."""

    contributions: np.ndarray
    """(n, 8): each feature's contribution, in schema order."""
    base_value: float

    def by_feature(self) -> list[dict[str, float]]:
        """Each row's contributions by feature name, in schema order."""
        return [dict(zip(FEATURES, row, strict=True)) for row in self.contributions.tolist()]

    def table(self) -> np.ndarray:
        """[N, 9]: each row's 8 contributions, then the base value (Triton FIL's layout of
        its `treeshap_output`)."""
        base = np.full((len(self.contributions), 1), self.base_value)
        return np.hstack([self.contributions, base])


class Explainer:
    """Contributions of validated rows, from the cache or TreeSHAP, cached per row."""

    def __init__(
        self, loader: ExplainerLoader, cache: PredictionCache, key_prefix: str, version: str
    ) -> None:
        self._loader = loader
        self._cache = cache
        self._namespace = f"{key_prefix}:shap"
        self._version = version

    def check(self) -> None:
        self._loader.check()

    def _keys(self, digests: Sequence[str]) -> list[str]:
        """One cache key per row and feature: `<prefix>:shap:<version>:<row md5>:<feature>`."""
        return [
            cache_key(self._namespace, self._version, f"{digest}:{name}")
            for digest in digests
            for name in FEATURES
        ]

    async def explain(self, rows: np.ndarray, digests: Sequence[str]) -> Explanations:
        """The rows' explanations; `digests` are their canonical md5s (the cache keys').

        The explainer is loaded first even when every row is cached: it holds the base
        value."""
        explainer = await self._loader.get()
        keys = self._keys(digests)
        found = await self._cache.lookup(keys)
        values = np.array([np.nan if v is None else v for v in found], dtype=np.float64)
        contributions = values.reshape(len(rows), N_FEATURES)
        missing = np.flatnonzero(np.isnan(contributions).any(axis=1))
        if missing.size:
            computed = await asyncio.to_thread(explainer.contributions, rows[missing])
            contributions[missing] = computed
            entries = {
                keys[row * N_FEATURES + column]: value
                for row, values_row in zip(missing.tolist(), computed.tolist(), strict=True)
                for column, value in enumerate(values_row)
            }
            await self._cache.insert(entries)
        return Explanations(contributions, explainer.base_value)
