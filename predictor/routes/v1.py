"""`POST /v1/models/{name}:predict` and `:explain`: KServe's V1 protocol
(predictor.protocol.v1); `:explain` answers 501 for a model that does not explain."""

from __future__ import annotations

import numpy as np
import orjson
from starlette.types import Scope

from predictor.admission import Admission
from predictor.answers import Answer, error_answer
from predictor.explain import NotExplainable
from predictor.json_body import InvalidJson, loads_strict
from predictor.model import Decoded, HousingModel, Route
from predictor.protocol import v1
from predictor.routes.inference import InferenceRoute, Memo, decode_body, prediction_headers
from predictor.schema import InvalidRows


def path(model_name: str) -> str:
    return f"/v1/models/{model_name}:predict"


def explain_path(model_name: str) -> str:
    return f"/v1/models/{model_name}:explain"


def rows(body: bytes, max_rows: int) -> np.ndarray:
    """The validated rows of a V1 body: `InvalidJson` or `InvalidRows` otherwise."""
    return v1.rows(loads_strict(body), max_rows)


def route(
    model: HousingModel,
    admission: Admission,
    max_body_bytes: int,
    offload_body_bytes: int,
    memo: Memo | None,
    explain: bool = False,
) -> InferenceRoute:
    """`:predict`, or with `explain` `:explain` (kserve's explain verb: the model's
    `explain`, through the same preprocess and postprocess)."""

    async def handle(scope: Scope, body: bytes) -> Answer:
        try:
            matrix = await decode_body(rows, body, model.max_batch_size, offload_body_bytes)
        except InvalidJson as e:
            return error_answer(400, f"malformed JSON: {e}")
        except InvalidRows as e:
            return error_answer(400, str(e))
        try:
            answer, cache = await model.run(Decoded(Route.V1, matrix, explain=explain))
        except NotExplainable as e:
            return error_answer(501, e.reason)
        headers = prediction_headers(model.version, cache)
        return Answer(200, orjson.dumps(answer), headers, rows=len(matrix))

    name = "v1_explain" if explain else "v1"
    return InferenceRoute(name, handle, model, admission, max_body_bytes, memo)
