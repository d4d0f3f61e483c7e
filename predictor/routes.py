"""The legacy `POST /predict` route of the original system, on kserve's own app.

A plain Starlette route (no FastAPI body models): the body is parsed once with orjson,
then goes through the same `HousingModel` pipeline as V1 and V2.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from predictor.model import HousingModel, LegacyRequest
from predictor.schema import InvalidRows

JSON_MEDIA_TYPE = "application/json"


def _json(status: int, content: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status, headers, media_type=JSON_MEDIA_TYPE)


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == JSON_MEDIA_TYPE or media_type.endswith("+json")


def legacy_predict_route(model: HousingModel) -> Route:
    """`POST /predict`: a JSON list of feature objects → query_key, inputs, prediction."""

    async def predict(request: Request) -> Response:
        if not _is_json(request.headers.get("content-type", "")):
            return _json(415, {"error": "Content-Type must be application/json"})
        body = await request.body()
        try:
            items = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            return _json(400, {"error": f"malformed JSON: {e}"})
        if not model.ready:
            return _json(503, {"error": f"model {model.name} is not ready"})
        try:
            response, headers = await model(LegacyRequest(items), dict(request.headers))
        except InvalidRows as e:
            detail = [
                {
                    "loc": [
                        "body",
                        *([] if err.index is None else [err.index]),
                        *([err.field] if err.field else []),
                    ],
                    "msg": err.message,
                }
                for err in e.errors
            ]
            return _json(422, {"error": str(e), "detail": detail})
        return _json(200, response, headers)

    return Route("/predict", predict, methods=["POST"], name="legacy_predict")
