"""The KServe model: load → preprocess (key) → predict (cache, model) → postprocess.

Every route (legacy `/predict`, V1, V2 REST and gRPC) goes through this one class, so
identical rows get identical keys, cache entries and predictions. The protocol modules
(predictor.protocol) decode and validate each request into rows before `preprocess`, and
encode what `postprocess` returns; the routes (predictor.rest.routes, and gRPC ModelInfer in
predictor.grpc.infer) call `run`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any, Final

import numpy as np
from kserve import Model
from kserve.logging import logger
from kserve.metrics import POST_HIST_TIME, PRE_HIST_TIME, PREDICT_HIST_TIME

from predictor.cache.keys import cache_key, canonical_rows, row_digests
from predictor.cache.single_flight import SingleFlight
from predictor.cache.tiers import PredictionCache
from predictor.metrics import (
    CACHE_MISSES,
    MODEL_SECONDS,
    ROWS_COALESCED,
    ROWS_PREDICTED,
    count,
)
from predictor.model.artifact import load_artifact, load_serving_model
from predictor.model.compiled import KIND_COMPILED_HGB, Regressor
from predictor.model.drift import DriftReference, Exported, FeatureHistogram
from predictor.model.explain import Explainer, ExplainerLoader, Explanations, TreeShap
from predictor.protocol import legacy, v1, v2, v2_grpc
from predictor.protocol.schema import N_FEATURES
from predictor.upstream.prometheus_histogram import FastObserver

# Up to this many uncached rows the compiled model runs on the event loop: it costs
# microseconds, less than a hop to a worker thread. Larger batches go to a thread so that
# health probes and other requests are not stalled behind them.
INLINE_MAX_ROWS: Final = 64
# The model version is this many hex digits of the artifact's sha256 (64 bits: plenty to
# tell model versions apart, short enough for URLs and cheap in cache keys). The one form
# used everywhere: X-Model-Version, V2 `model_version` and metadata, gRPC, cache keys.
VERSION_CHARS: Final = 16


class Route(Enum):
    LEGACY = "legacy"
    V1 = "v1"
    V2 = "v2"
    GRPC = "grpc"


@dataclass(frozen=True, slots=True)
class Decoded:
    """A request its protocol module decoded and validated: what `preprocess` takes."""

    route: Route
    rows: np.ndarray
    spec: v2.AnswerSpec | None = None
    """How a V2 request wants its answer."""
    explain: bool = False
    """Explain each row too: the explain routes, or V2's `treeshap_output` asked for."""


@dataclass(frozen=True, slots=True)
class PreparedBatch:
    """What `preprocess` hands to `predict`: the rows and their cache keys."""

    request: Decoded
    canonical: list[str]
    keys: list[str]


@dataclass(frozen=True, slots=True)
class BatchResult:
    batch: PreparedBatch
    predictions: np.ndarray
    cache_status: str
    explanations: Explanations | None = None


class HousingModel(Model):  # type: ignore[misc]
    """California house-price regressor with a prediction cache in front of it."""

    def __init__(
        self,
        name: str,
        model_dir: Path,
        cache: PredictionCache,
        max_batch_size: int,
        key_prefix: str = "housing",
    ) -> None:
        super().__init__(name, return_response_headers=True)
        self.model_dir = model_dir
        self.max_batch_size = max_batch_size
        self.key_prefix = key_prefix
        self.version = ""
        self._cache = cache
        self._regressor: Regressor | None = None
        self._inline = False
        self._drift: FeatureHistogram | None = None
        self._explainer: Explainer | None = None
        self._flights: SingleFlight[str, tuple[float, bool]] = SingleFlight()
        # kserve's own stage histograms, as its `__call__` times them, looked up once.
        self._stage_timers = tuple(
            FastObserver(histogram.labels(model_name=name))
            for histogram in (PRE_HIST_TIME, PREDICT_HIST_TIME, POST_HIST_TIME)
        )
        self._model_timer = FastObserver(MODEL_SECONDS)

    # -- load -----------------------------------------------------------------------------

    def load(self) -> bool:
        """Load and check the artifact; `ready` turns true only once it is fully usable."""
        served = load_serving_model(self.model_dir)
        self._regressor = served.regressor
        # Only the compiled path is cheap enough to run on the event loop; scikit-learn
        # (and anything else) costs a millisecond or more per call and goes to a thread.
        self._inline = self._regressor.kind == KIND_COMPILED_HGB
        self.version = served.version[:VERSION_CHARS]
        self._watch_drift(DriftReference.from_metadata(served.metadata))
        loader = ExplainerLoader(
            str(served.metadata.get("estimator")),
            lambda: TreeShap(load_artifact(self.model_dir).estimator),
        )
        self._explainer = Explainer(loader, self._cache, self.key_prefix, self.version)
        logger.info(
            "Loaded model %s (%s, version %s) with the %s inference path (%s)",
            self.name,
            served.metadata.get("estimator"),
            self.version,
            self._regressor.kind,
            served.path.value,
        )
        self.ready = True
        return self.ready

    @property
    def regressor(self) -> Regressor | None:
        """The loaded model alone, without the cache (to time it at start-up)."""
        return self._regressor

    def _watch_drift(self, reference: DriftReference | None) -> None:
        """Export the served inputs' histogram over this model's training deciles (replacing
        an earlier model's); a model trained without them exports none."""
        if reference is None:
            logger.warning("Model %s has no training deciles: no drift histogram", self.name)
        self._drift = None if reference is None else FeatureHistogram(reference, self.version)
        Exported.replace(self._drift)

    def get_input_types(self) -> list[dict[str, Any]]:
        return [{"name": v2.INPUT_NAME, "datatype": "FP64", "shape": [-1, N_FEATURES]}]

    def get_output_types(self) -> list[dict[str, Any]]:
        return [
            {"name": v2.OUTPUT_NAME, "datatype": "FP64", "shape": [-1]},
            {"name": v2.EXPLAIN_OUTPUT, "datatype": "FP64", "shape": [-1, N_FEATURES + 1]},
        ]

    async def run(self, request: Decoded) -> tuple[Any, str]:
        """preprocess → predict → postprocess for the project's routes (REST, and gRPC
        ModelInfer in predictor.grpc.infer): the answer and the cache status (HIT,
        PARTIAL, MISS).

        The same stages kserve's `__call__` runs, timed in the same kserve histograms
        (`request_preprocess_seconds`, `request_predict_seconds`,
        `request_postprocess_seconds`), without its per-stage coroutine checks.
        """
        pre, predict, post = self._stage_timers
        started = time.perf_counter()
        batch = await self.preprocess(request)
        prepared = time.perf_counter()
        pre.observe(prepared - started)
        result = await self.predict(batch)
        predicted = time.perf_counter()
        predict.observe(predicted - prepared)
        answer = await self.postprocess(result)
        post.observe(time.perf_counter() - predicted)
        return answer, result.cache_status

    # -- preprocess -----------------------------------------------------------------------

    async def preprocess(
        self,
        payload: Decoded,
        headers: dict[str, str] | None = None,
    ) -> PreparedBatch:
        """The rows' canonical form and cache keys (the routes decode and validate them)."""
        if payload.explain:
            self._explaining().check()  # 501 for a model that cannot explain, before any work
        if self._drift is not None:
            self._drift.observe(payload.rows)
        canonical = canonical_rows(payload.rows)
        prefix = cache_key(self.key_prefix, self.version, "")
        keys = [prefix + digest for digest in row_digests(canonical)]
        return PreparedBatch(payload, canonical, keys)

    # -- predict --------------------------------------------------------------------------

    async def predict(
        self,
        payload: PreparedBatch,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> BatchResult:
        """Answer each row from the cache or the model, in request order.

        The in-process tier first, without a task or an await: a request answered
        entirely from it (the common case under repeated traffic) ends there. Misses go to
        the model directly when nothing on the way can suspend (in-process cache, model on
        the event loop: no other request can run in between); otherwise through single
        flight (predictor.cache.single_flight), so concurrent identical misses look up the shared
        tier and run the model once.
        """
        keys = payload.keys
        found = self._cache.peek(keys)
        pending = [i for i, value in enumerate(found) if value is None]
        if not pending:
            hit = BatchResult(payload, np.array(found, dtype=np.float64), "HIT")
            return await self._explained(hit) if payload.request.explain else hit
        pending_keys = [keys[i] for i in pending]
        rows = payload.request.rows
        if not self._cache.shared and self._inline and len(pending) <= INLINE_MAX_ROWS:
            missed = rows if len(pending) == len(keys) else rows[pending]
            answers = await self._compute(pending_keys, missed)
        else:

            def answer(positions: list[int]) -> Any:
                subset = [pending[p] for p in positions]
                return self._answer([keys[i] for i in subset], rows[subset])

            answers, joined = await self._flights.get(pending_keys, answer)
            count(ROWS_COALESCED, joined)
        hits = len(keys) - len(pending)
        for i, (value, cached) in zip(pending, answers, strict=True):
            found[i] = value
            hits += cached
        status = "HIT" if hits == len(keys) else "MISS" if not hits else "PARTIAL"
        result = BatchResult(payload, np.array(found, dtype=np.float64), status)
        return await self._explained(result) if payload.request.explain else result

    async def explain(
        self, payload: PreparedBatch, headers: dict[str, str] | None = None
    ) -> BatchResult:
        """kserve's explain verb: each row's prediction and its explanation."""
        self._explaining().check()
        return await self.predict(replace(payload, request=replace(payload.request, explain=True)))

    def _explaining(self) -> Explainer:
        if self._explainer is None:
            raise RuntimeError(f"model {self.name} is not loaded")
        return self._explainer

    async def _explained(self, result: BatchResult) -> BatchResult:
        batch = result.batch
        explanations = await self._explaining().explain(
            batch.request.rows, row_digests(batch.canonical)
        )
        return replace(result, explanations=explanations)

    async def _compute(self, keys: list[str], rows: np.ndarray) -> list[tuple[float, bool]]:
        """Run the model on rows no cache tier holds (duplicates once) and cache them."""
        unique: dict[str, int] = {}
        for i, key in enumerate(keys):
            unique.setdefault(key, i)
        count(CACHE_MISSES, len(unique))
        distinct = rows[list(unique.values())] if len(unique) < len(keys) else rows
        values = (await self._run_model(distinct)).tolist()
        computed = dict(zip(unique, values, strict=True))
        await self._cache.insert(computed)
        return [(computed[key], False) for key in keys]

    async def _answer(self, keys: list[str], rows: np.ndarray) -> list[tuple[float, bool]]:
        """Look distinct keys up in the cache; run the model on the misses and cache them."""
        found = await self._cache.lookup(keys)
        missing = [i for i, value in enumerate(found) if value is None]
        answers = [(value, True) for value in found]
        if missing:
            computed = (await self._run_model(rows[missing])).tolist()
            entries = {}
            for i, value in zip(missing, computed, strict=True):
                answers[i] = (value, False)
                entries[keys[i]] = value
            await self._cache.insert(entries)
        return answers  # type: ignore[return-value]  # every None replaced above

    async def _run_model(self, rows: np.ndarray) -> np.ndarray:
        regressor = self._regressor
        if regressor is None:
            raise RuntimeError(f"model {self.name} is not loaded")
        started = time.perf_counter()
        if self._inline and len(rows) <= INLINE_MAX_ROWS:
            predictions = regressor.predict(rows)
        else:
            predictions = await asyncio.to_thread(regressor.predict, rows)
        self._model_timer.observe(time.perf_counter() - started)
        ROWS_PREDICTED.inc(len(rows))
        return predictions

    # -- postprocess ----------------------------------------------------------------------

    async def postprocess(
        self,
        result: BatchResult,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> Any:
        """The answer as its protocol shapes it: a JSON-ready dict (legacy, V1), a V2 REST
        answer (predictor.protocol.v2), or a `ModelInferResponse` (gRPC,
        predictor.protocol.v2_grpc)."""
        if response_headers is not None:
            response_headers["X-Model-Version"] = self.version
            response_headers["X-Cache"] = result.cache_status
        request = result.batch.request
        predictions = result.predictions
        explained = result.explanations
        route = request.route
        if route is Route.LEGACY:
            by_feature = (
                None if explained is None else (explained.base_value, explained.by_feature())
            )
            return legacy.answer(result.batch.canonical, request.rows, predictions, by_feature)
        if route is Route.V1:
            if explained is None:
                return {"predictions": predictions.tolist()}
            return v1.explanations(predictions, explained.base_value, explained.by_feature())
        assert request.spec is not None
        table = None if explained is None else explained.table()
        if route is Route.V2:
            return v2.rest_answer(request.spec, predictions, self.name, self.version, table)
        return v2_grpc.response(request.spec, predictions, self.name, self.version, table)
