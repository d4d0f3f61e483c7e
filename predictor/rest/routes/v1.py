"""`POST /v1/models/{name}:predict` and `:explain`: KServe's V1 protocol
(predictor.protocol.v1); `:explain` answers 501 for a model that does not explain."""

from __future__ import annotations

import numpy as np

from predictor.admission import Admission
from predictor.model.housing import HousingModel, Route
from predictor.protocol import v1
from predictor.protocol.json_body import loads_strict
from predictor.protocol.schema import InvalidRows
from predictor.rest.answers import Answer, error_answer
from predictor.rest.routes.inference import InferenceRoute, Memo, rows_handler


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

    handle = rows_handler(model, Route.V1, rows, _refuse, offload_body_bytes, explain)
    name = "v1_explain" if explain else "v1"
    return InferenceRoute(name, handle, model, admission, max_body_bytes, memo)


def _refuse(error: InvalidRows) -> Answer:
    return error_answer(400, str(error))
