"""`POST /predict`: the original service's route, a JSON list of feature objects; and
`POST /explain`, the same body, explained.

`/predict` answers `{"query_key", "inputs", "prediction"}`; `/explain` adds `base_value`
and `contributions` (one object per row, by feature), or 501 for a model that does not
explain. A bad row fails the whole request with 422 and a FastAPI-style `detail` saying
where (`["body", index, field]`) and what.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import orjson

from predictor.admission import Admission
from predictor.answers import Answer
from predictor.json_body import loads_strict
from predictor.model import HousingModel, Route
from predictor.routes.inference import InferenceRoute, Memo, rows_handler
from predictor.schema import InvalidRows, request_error, validate_objects

PATH: Final = "/predict"
EXPLAIN_PATH: Final = "/explain"


def rows(body: bytes, max_rows: int) -> np.ndarray:
    """The validated rows of a `/predict` body: `InvalidJson` or `InvalidRows` otherwise."""
    items = loads_strict(body)
    if isinstance(items, list) and len(items) > max_rows:
        raise request_error(f"{len(items)} rows exceed max_batch_size {max_rows}")
    return validate_objects(items)


def route(
    model: HousingModel,
    admission: Admission,
    max_body_bytes: int,
    offload_body_bytes: int,
    memo: Memo | None,
    explain: bool = False,
) -> InferenceRoute:
    """`/predict`, or with `explain` `/explain`."""

    handle = rows_handler(model, Route.LEGACY, rows, _refuse, offload_body_bytes, explain)
    name = "explain" if explain else "legacy"
    return InferenceRoute(name, handle, model, admission, max_body_bytes, memo)


def _refuse(error: InvalidRows) -> Answer:
    """422 with FastAPI's `detail` beside the message, as the original service answered."""
    message = str(error)
    content = {"error": message, "detail": _error_detail(error)}
    return Answer(422, orjson.dumps(content), error=message)


def _error_detail(error: InvalidRows) -> list[dict[str, Any]]:
    """FastAPI-style `detail`: where each problem is (`["body", index, field]`) and what."""
    detail = []
    for err in error.errors:
        loc: list[str | int] = ["body"]
        if err.index is not None:
            loc.append(err.index)
        if err.field:
            loc.append(err.field)
        detail.append({"loc": loc, "msg": err.message})
    return detail
