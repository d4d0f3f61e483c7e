"""`POST /v2/models/{name}[/versions/{version}]/infer`: the Open Inference Protocol's REST
inference (predictor.protocol.v2), JSON or the binary tensor extension, in and out."""

from __future__ import annotations

import numpy as np
from starlette.types import Scope

from predictor.admission import Admission
from predictor.model.explain import NotExplainable
from predictor.model.housing import Decoded, HousingModel, Route
from predictor.protocol import v2
from predictor.protocol.schema import InvalidRows
from predictor.rest.answers import Answer, error_answer
from predictor.rest.bodies import header
from predictor.rest.routes.inference import (
    INFERENCE_HEADER,
    InferenceRoute,
    decode_body,
    prediction_headers,
)


def path(model_name: str) -> str:
    return f"/v2/models/{model_name}/infer"


def route(
    model: HousingModel, admission: Admission, max_body_bytes: int, offload_body_bytes: int
) -> InferenceRoute:
    def decode(body: bytes, binary_header: bytes | None) -> tuple[np.ndarray, v2.AnswerSpec]:
        request, tail = v2.parse_rest(body, binary_header)
        return v2.rest_rows(request, tail, model.max_batch_size)

    async def handle(scope: Scope, body: bytes) -> Answer:
        binary_header = header(scope, INFERENCE_HEADER)
        try:
            matrix, spec = await decode_body(decode, body, binary_header, offload_body_bytes)
        except InvalidRows as e:
            return error_answer(400, str(e))
        try:
            answer, cache = await model.run(Decoded(Route.V2, matrix, spec, spec.explains))
        except NotExplainable as e:
            return error_answer(501, e.reason)
        headers = prediction_headers(model.version, cache)
        if answer.tail is None:
            return Answer(200, answer.header, headers, rows=len(matrix))
        headers.append((INFERENCE_HEADER, str(len(answer.header)).encode()))
        body = answer.header + answer.tail
        return Answer(200, body, headers, v2.BINARY_CONTENT_TYPE, rows=len(matrix))

    return InferenceRoute("v2", handle, model, admission, max_body_bytes, binary_extension=True)
