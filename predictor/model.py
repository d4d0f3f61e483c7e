"""The KServe model: load → preprocess (validate, key) → predict (cache, model) → postprocess.

Every route (legacy `/predict`, V1, V2 REST and gRPC) goes through this one class, so
identical rows get identical validation, keys, cache entries and predictions.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any, Final, NamedTuple

import numpy as np
from kserve import Model
from kserve.errors import InvalidInput
from kserve.logging import logger
from kserve.model import InferenceVerb
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse, RequestedOutput
from prometheus_client import REGISTRY

from predictor.artifact import load_artifact, load_serving_model
from predictor.cache import PredictionCache, cache_key, count
from predictor.drift import DriftReference, FeatureHistogram
from predictor.explain import Explainer, ExplainerLoader, Explanations, TreeShap
from predictor.fast_model import KIND_COMPILED_HGB, Regressor
from predictor.keys import canonical_rows, query_key, row_digests
from predictor.metrics import MODEL_SECONDS, REQUEST_SECONDS, ROWS_COALESCED, ROWS_PREDICTED
from predictor.schema import (
    FEATURES,
    N_FEATURES,
    InvalidRows,
    request_error,
    validate_arrays,
    validate_instances,
    validate_matrix,
    validate_objects,
)

V2_INPUT_NAME: Final = "input-0"
V2_OUTPUT_NAME: Final = "predict"
# The TreeSHAP output, named and laid out as Triton's FIL backend does: per row the 8
# contributions in feature order, then the base value.
V2_EXPLAIN_OUTPUT: Final = "treeshap_output"
V2_OUTPUTS: Final = (V2_OUTPUT_NAME, V2_EXPLAIN_OUTPUT)
V2_INPUT_DATATYPES: Final = ("FP32", "FP64")
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


@dataclass(frozen=True)
class LegacyRequest:
    """The parsed body of `POST /predict`, marked so `preprocess` knows its shape."""

    items: Any
    explain: bool = False
    """`POST /explain`: the answer adds each row's explanation."""


@dataclass(frozen=True)
class PreparedBatch:
    """What `preprocess` hands to `predict`: validated rows and their cache keys."""

    route: Route
    rows: np.ndarray
    canonical: list[str]
    keys: list[str]
    request_id: str | None = None
    outputs: V2Outputs | None = None
    explain: bool = False
    """Explain each row too (the explain routes, or V2's `treeshap_output` asked for)."""


@dataclass(frozen=True)
class V2Outputs:
    """How a V2 request wants its output: in binary (REST's binary tensor extension, gRPC's
    `raw_output_contents`) or typed, and the outputs it named, if any."""

    binary: bool
    requested: list[RequestedOutput] | None
    as_array: bool = False
    """Hand kserve the predictions as an array, which its REST encoder writes as each
    requested output asks (over gRPC it wants a list, and always converts it as asked)."""
    names: tuple[str, ...] = (V2_OUTPUT_NAME,)
    """The outputs to answer with: those requested, else `predict` alone."""


@dataclass(frozen=True)
class BatchResult:
    batch: PreparedBatch
    predictions: np.ndarray
    cache_status: str
    explanations: Explanations | None = None


class _Answers(NamedTuple):
    """One lookup-and-predict run over distinct keys: a value per key, and whether it was
    found in a cache (True) or computed by the model (False)."""

    values: np.ndarray
    cached: np.ndarray


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
        # Single flight: each key being looked up or predicted → (its run, its index there).
        self._in_flight: dict[str, tuple[asyncio.Task[_Answers], int]] = {}

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

    def _watch_drift(self, reference: DriftReference | None) -> None:
        """Export the served inputs' histogram over this model's training deciles (replacing
        an earlier model's); a model trained without them exports none."""
        if self._drift is not None:
            REGISTRY.unregister(self._drift)
            self._drift = None
        if reference is None:
            logger.warning("Model %s has no training deciles: no drift histogram", self.name)
            return
        self._drift = FeatureHistogram(reference, self.version)
        REGISTRY.register(self._drift)

    def get_input_types(self) -> list[dict[str, Any]]:
        return [{"name": V2_INPUT_NAME, "datatype": "FP64", "shape": [-1, N_FEATURES]}]

    def get_output_types(self) -> list[dict[str, Any]]:
        return [
            {"name": V2_OUTPUT_NAME, "datatype": "FP64", "shape": [-1]},
            {"name": V2_EXPLAIN_OUTPUT, "datatype": "FP64", "shape": [-1, N_FEATURES + 1]},
        ]

    async def __call__(
        self,
        body: Any,
        headers: dict[str, str] | None = None,
        verb: InferenceVerb = InferenceVerb.PREDICT,
    ) -> Any:
        """kserve's pipeline; gRPC calls are also timed here (REST is timed in front of
        kserve, in predictor.asgi), by their gRPC status."""
        call = super().__call__(body, headers, verb)
        if not (isinstance(body, InferRequest) and body.from_grpc):
            return await call
        started = time.perf_counter()
        code = "INTERNAL"
        try:
            result = await call
            code = "OK"
            return result
        except InvalidInput:
            code = "INVALID_ARGUMENT"
            raise
        finally:
            REQUEST_SECONDS.labels("grpc", code).observe(time.perf_counter() - started)

    async def run(self, payload: Any) -> tuple[Any, dict[str, str]]:
        """preprocess → predict → postprocess, without kserve's per-stage wrapping.

        The legacy route's hot path: the same stages V1 and V2 go through, minus three
        timers and coroutine checks per request.
        """
        response_headers: dict[str, str] = {}
        batch = await self.preprocess(payload)
        result = await self.predict(batch, None, response_headers)
        return await self.postprocess(result, None, response_headers), response_headers

    # -- preprocess -----------------------------------------------------------------------

    async def preprocess(
        self, payload: Any, headers: dict[str, str] | None = None
    ) -> PreparedBatch:
        explain = False
        if isinstance(payload, LegacyRequest):
            route, request_id = Route.LEGACY, None
            rows = self._checked(validate_objects, payload.items)
            explain = payload.explain
        else:
            try:
                route, rows, request_id = self._decode_kserve(payload)
            except InvalidRows as e:
                raise InvalidInput(str(e)) from e
        if self._drift is not None:
            self._drift.observe(rows)
        canonical = canonical_rows(rows)
        keys = [cache_key(self.key_prefix, self.version, d) for d in row_digests(canonical)]
        outputs = _v2_outputs(payload) if route is Route.V2 else None
        if outputs is not None:
            explain = V2_EXPLAIN_OUTPUT in outputs.names
        batch = PreparedBatch(route, rows, canonical, keys, request_id, outputs, explain)
        if explain:
            self._explaining().check()  # 501 for a model that cannot explain, before any work
        return batch

    def _checked(self, validate: Any, items: Any) -> np.ndarray:
        if isinstance(items, list) and len(items) > self.max_batch_size:
            raise _too_many_rows(len(items), self.max_batch_size)
        rows: np.ndarray = validate(items)
        return rows

    def _decode_kserve(self, payload: Any) -> tuple[Route, np.ndarray, str | None]:
        if isinstance(payload, InferRequest):
            return Route.V2, self._decode_v2(payload), payload.id
        if isinstance(payload, dict):
            instances = v1_instances(payload)
            if instances is None:
                raise request_error(V1_OUTLINE)
            if instances and all(isinstance(item, list) for item in instances):
                return Route.V1, self._checked(validate_arrays, instances), None
            return Route.V1, self._checked(validate_instances, instances), None
        raise request_error(V1_OUTLINE)

    def _decode_v2(self, request: InferRequest) -> np.ndarray:
        _check_requested_outputs(request.request_outputs)
        if len(request.inputs) != 1:
            raise request_error(f"expected exactly one input tensor, got {len(request.inputs)}")
        tensor = request.inputs[0]
        if tensor.datatype not in V2_INPUT_DATATYPES:
            raise request_error(f"input datatype must be FP32 or FP64, got {tensor.datatype}")
        shape = list(tensor.shape)
        if len(shape) != 2 or shape[1] != N_FEATURES or shape[0] < 0:
            raise request_error(f"input shape must be [N, {N_FEATURES}], got {shape}")
        if shape[0] > self.max_batch_size:
            raise _too_many_rows(shape[0], self.max_batch_size)
        if isinstance(tensor.data, list) and not _all_numbers(tensor.data):
            raise request_error("input data must hold numbers only")
        try:
            matrix = tensor.as_numpy()
        except (ValueError, TypeError, OverflowError) as e:
            raise request_error(
                f"input data does not match shape {shape} (an {tensor.datatype} tensor sends "
                f"its values as {tensor.datatype.lower()}_contents over gRPC): {e}"
            ) from e
        if tensor.datatype == "FP32":
            # Widen each float32 through its shortest decimal, so 8.3252 sent as FP32 is the
            # same row (same key, same prediction) as 8.3252 sent as JSON or FP64.
            matrix = matrix.astype(str).astype(np.float64)
        return validate_matrix(matrix)

    # -- predict --------------------------------------------------------------------------

    async def predict(
        self,
        payload: PreparedBatch,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> BatchResult:
        """Answer each row from the cache or the model, merged back in request order.

        Single flight: a row whose key is already being looked up or predicted for another
        request waits for that run instead of starting its own, so concurrent identical
        misses run the model once. Runs are shielded: a cancelled request does not cancel
        a run that other requests wait for, and a run's error reaches all of them.
        """
        # The in-process tier first, without a task or an await: a request answered
        # entirely from it (the common case under repeated traffic) ends here.
        found = self._cache.peek(payload.keys)
        pending = [i for i, value in enumerate(found) if value is None]
        if not pending:
            hit = BatchResult(payload, np.array(found, dtype=np.float64), "HIT")
            return await self._explained(hit) if payload.explain else hit
        predictions = np.array([np.nan if v is None else v for v in found], dtype=np.float64)
        cached = np.ones(len(found), dtype=bool)
        if not self._cache.shared and self._inline and len(pending) <= INLINE_MAX_ROWS:
            # Nothing below suspends (in-process cache, model on the event loop), so no
            # other request can run in between: there is no flight to share.
            unique: dict[str, int] = {}
            for i in pending:
                unique.setdefault(payload.keys[i], i)
            answers = await self._answer(list(unique), payload.rows[list(unique.values())])
            index = {key: j for j, key in enumerate(unique)}
            positions = [index[payload.keys[i]] for i in pending]
            predictions[pending] = answers.values[positions]
            cached[pending] = answers.cached[positions]
        else:
            for run, (rows, positions) in self._join_flights(payload, pending).items():
                answers = await asyncio.shield(run)
                predictions[rows] = answers.values[positions]
                cached[rows] = answers.cached[positions]
        status = "MISS" if not cached.any() else "HIT" if cached.all() else "PARTIAL"
        result = BatchResult(payload, predictions, status)
        return await self._explained(result) if payload.explain else result

    async def explain(
        self, payload: PreparedBatch, headers: dict[str, str] | None = None
    ) -> BatchResult:
        """kserve's explain verb (V1 `:explain`): each row's prediction and explanation."""
        self._explaining().check()
        return await self.predict(replace(payload, explain=True))

    def _explaining(self) -> Explainer:
        if self._explainer is None:
            raise RuntimeError(f"model {self.name} is not loaded")
        return self._explainer

    async def _explained(self, result: BatchResult) -> BatchResult:
        batch = result.batch
        explanations = await self._explaining().explain(batch.rows, row_digests(batch.canonical))
        return replace(result, explanations=explanations)

    def _join_flights(
        self, batch: PreparedBatch, pending: list[int]
    ) -> dict[asyncio.Task[_Answers], tuple[list[int], list[int]]]:
        """Group the pending rows by the run that answers them (rows of the batch, indices
        in the run): runs in flight for identical rows, and one started here for the other
        keys."""
        new: dict[str, int] = {}
        for i in pending:
            key = batch.keys[i]
            if key not in self._in_flight:
                new.setdefault(key, i)
        if new:
            keys = list(new)
            run = asyncio.create_task(self._answer(keys, batch.rows[list(new.values())]))
            for j, key in enumerate(keys):
                self._in_flight[key] = (run, j)
            run.add_done_callback(lambda _: self._land(keys))
        count(ROWS_COALESCED, len(pending) - len(new))
        groups: dict[asyncio.Task[_Answers], tuple[list[int], list[int]]] = {}
        for i in pending:
            run, j = self._in_flight[batch.keys[i]]
            rows, positions = groups.setdefault(run, ([], []))
            rows.append(i)
            positions.append(j)
        return groups

    def _land(self, keys: list[str]) -> None:
        for key in keys:
            del self._in_flight[key]

    async def _answer(self, keys: list[str], rows: np.ndarray) -> _Answers:
        """Look distinct keys up in the cache; run the model on the misses and cache them."""
        found = await self._cache.lookup(keys)
        cached = np.array([value is not None for value in found], dtype=bool)
        values = np.array([np.nan if v is None else v for v in found], dtype=np.float64)
        missing = np.flatnonzero(~cached)
        if missing.size:
            computed = await self._run_model(rows[missing])
            values[missing] = computed
            missing_keys = [keys[i] for i in missing.tolist()]
            await self._cache.insert(dict(zip(missing_keys, computed.tolist(), strict=True)))
        return _Answers(values, cached)

    async def _run_model(self, rows: np.ndarray) -> np.ndarray:
        regressor = self._regressor
        if regressor is None:
            raise RuntimeError(f"model {self.name} is not loaded")
        with MODEL_SECONDS.time():
            if self._inline and len(rows) <= INLINE_MAX_ROWS:
                predictions = regressor.predict(rows)
            else:
                predictions = await asyncio.to_thread(regressor.predict, rows)
        ROWS_PREDICTED.inc(len(rows))
        return predictions

    # -- postprocess ----------------------------------------------------------------------

    async def postprocess(
        self,
        result: BatchResult,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> dict[str, Any] | InferResponse:
        if response_headers is not None:
            response_headers["X-Model-Version"] = self.version
            response_headers["X-Cache"] = result.cache_status
        batch = result.batch
        values = result.predictions.tolist()
        explained = result.explanations
        if batch.route is Route.LEGACY:
            answer = {
                "query_key": query_key(batch.canonical),
                "inputs": [dict(zip(FEATURES, row, strict=True)) for row in batch.rows.tolist()],
                "prediction": values,
            }
            if explained is not None:
                answer["base_value"] = explained.base_value
                answer["contributions"] = _by_feature(explained.contributions)
            return answer
        if batch.route is Route.V1:
            if explained is None:
                return {"predictions": values}
            return {
                "explanations": [
                    {"prediction": p, "base_value": explained.base_value, "contributions": c}
                    for p, c in zip(values, _by_feature(explained.contributions), strict=True)
                ]
            }
        outputs = batch.outputs or V2Outputs(binary=False, requested=None)
        infer_outputs = []
        if V2_OUTPUT_NAME in outputs.names:
            data = result.predictions if outputs.as_array else values
            infer_outputs.append(
                InferOutput(name=V2_OUTPUT_NAME, shape=[len(values)], datatype="FP64", data=data)
            )
        if explained is not None:
            table = _treeshap_table(explained)
            infer_outputs.append(
                InferOutput(
                    name=V2_EXPLAIN_OUTPUT,
                    shape=list(table.shape),
                    datatype="FP64",
                    data=table if outputs.as_array else table.ravel().tolist(),
                )
            )
        return InferResponse(
            response_id=batch.request_id or str(uuid.uuid4()),
            model_name=self.name,
            model_version=self.version,
            infer_outputs=infer_outputs,
            use_binary_outputs=outputs.binary,
            requested_outputs=outputs.requested,
        )


V1_OUTLINE: Final = 'expected a JSON object {"instances": [...]} or {"inputs": [...]}'


def v1_instances(body: Any) -> list[Any] | None:
    """The rows of a V1 request: its `instances` or its `inputs` (KServe's V1 protocol takes
    either), or None when the body is not one of those two outlines."""
    if not isinstance(body, dict) or ("instances" in body) == ("inputs" in body):
        return None
    rows = body["instances"] if "instances" in body else body["inputs"]
    return rows if isinstance(rows, list) else None


def _by_feature(contributions: np.ndarray) -> list[dict[str, float]]:
    return [dict(zip(FEATURES, row, strict=True)) for row in contributions.tolist()]


def _treeshap_table(explained: Explanations) -> np.ndarray:
    """[N, 9]: each row's 8 contributions, then the base value (Triton FIL's layout)."""
    base = np.full((len(explained.contributions), 1), explained.base_value)
    return np.hstack([explained.contributions, base])


def _check_requested_outputs(requested: list[RequestedOutput] | None) -> None:
    """Only `predict` and `treeshap_output` exist; each named at most once; `binary_data`
    is a boolean."""
    seen: set[str] = set()
    for output in requested or ():
        if output.name not in V2_OUTPUTS:
            raise request_error(
                f"unknown output {output.name!r}: this model's outputs are "
                f"{V2_OUTPUT_NAME!r} and {V2_EXPLAIN_OUTPUT!r}"
            )
        if output.name in seen:
            raise request_error(f"output {output.name!r} is requested twice")
        seen.add(output.name)
        if not isinstance(output.binary_data, bool | None):
            raise request_error(f"output {output.name!r}: binary_data must be a boolean")


def _v2_outputs(request: InferRequest) -> V2Outputs:
    """Binary or typed output, as asked: over gRPC raw when the inputs came raw; over REST
    the request's `binary_data_output`, which a requested output's `binary_data` overrides
    (the binary tensor extension; kserve alone would drop the request-wide default for a
    named output without `binary_data`)."""
    binary = bool(request.use_binary_outputs)
    requested = request.request_outputs
    names = tuple(o.name for o in requested) if requested else (V2_OUTPUT_NAME,)
    if request.from_grpc:  # outputs already checked: kserve's to_grpc needs no list
        return V2Outputs(binary, None, names=names)
    if requested:
        requested = [
            RequestedOutput(
                name=output.name,
                parameters={
                    **(output.parameters or {}),
                    "binary_data": binary if output.binary_data is None else output.binary_data,
                },
            )
            for output in requested
        ]
    return V2Outputs(binary, requested, as_array=binary or bool(requested), names=names)


def _too_many_rows(rows: int, limit: int) -> InvalidRows:
    return request_error(f"{rows} rows exceed max_batch_size {limit}")


def _all_numbers(data: Sequence[Any]) -> bool:
    """True when a (nested) JSON list holds only ints and floats (booleans excluded)."""
    for item in data:
        if isinstance(item, list):
            if not _all_numbers(item):
                return False
        elif isinstance(item, bool) or not isinstance(item, int | float):
            return False
    return True
