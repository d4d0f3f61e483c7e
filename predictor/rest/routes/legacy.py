"""`POST /predict`: the original service's route, a JSON list of feature objects; and
`POST /explain`, the same body, explained.

The contract (rows in, the answer, the 422) is predictor.protocol.legacy's; `/explain`
is 501 for a model that does not explain.
"""

from __future__ import annotations

from typing import Final

import orjson

from predictor.admission import Admission
from predictor.model.housing import HousingModel, Route
from predictor.protocol import legacy
from predictor.protocol.schema import InvalidRows
from predictor.rest.answers import Answer
from predictor.rest.routes.inference import InferenceRoute, Memo, rows_handler

PATH: Final = "/predict"
EXPLAIN_PATH: Final = "/explain"


def route(
    model: HousingModel,
    admission: Admission,
    max_body_bytes: int,
    offload_body_bytes: int,
    memo: Memo | None,
    explain: bool = False,
) -> InferenceRoute:
    """`/predict`, or with `explain` `/explain`."""

    handle = rows_handler(model, Route.LEGACY, legacy.rows, _refuse, offload_body_bytes, explain)
    name = "explain" if explain else "legacy"
    return InferenceRoute(name, handle, model, admission, max_body_bytes, memo)


def _refuse(error: InvalidRows) -> Answer:
    return Answer(legacy.REFUSED_STATUS, orjson.dumps(legacy.refusal(error)), error=str(error))
