"""The original service's contract: `POST /predict` (and `POST /explain`).

In: a JSON list of objects with the 8 features. Out: `{"query_key", "inputs",
"prediction"}`, where `query_key` is the md5 of the request's canonical form
(predictor.cache.keys) and `inputs` the rows as read; `/explain` adds `base_value` and
`contributions` (one object per row, by feature). A bad row fails the whole request
with 422, `error` saying what and a FastAPI-style `detail` saying where
(`["body", index, field]`), as the original service (FastAPI) answered.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from predictor.cache.keys import query_key
from predictor.protocol.json_body import loads_strict
from predictor.protocol.schema import FEATURES, InvalidRows, request_error, validate_objects

REFUSED_STATUS = 422


def rows(body: bytes, max_rows: int) -> np.ndarray:
    """The validated rows of a body: `InvalidJson` or `InvalidRows` otherwise."""
    items = loads_strict(body)
    if isinstance(items, list) and len(items) > max_rows:
        raise request_error(f"{len(items)} rows exceed max_batch_size {max_rows}")
    return validate_objects(items)


def answer(
    canonical: list[str],
    rows: np.ndarray,
    predictions: np.ndarray,
    explained: tuple[float, list[dict[str, float]]] | None = None,
) -> dict[str, Any]:
    """The answer; `explained`: the base value and each row's contributions by feature."""
    content: dict[str, Any] = {
        "query_key": query_key(canonical),
        "inputs": [dict(zip(FEATURES, row, strict=True)) for row in rows.tolist()],
        "prediction": predictions.tolist(),
    }
    if explained is not None:
        content["base_value"], content["contributions"] = explained
    return content


def refusal(error: InvalidRows) -> dict[str, Any]:
    """The 422 body: the message, and FastAPI's `detail` beside it."""
    detail = []
    for err in error.errors:
        loc: list[str | int] = ["body"]
        if err.index is not None:
            loc.append(err.index)
        if err.field:
            loc.append(err.field)
        detail.append({"loc": loc, "msg": err.message})
    return {"error": str(error), "detail": detail}
