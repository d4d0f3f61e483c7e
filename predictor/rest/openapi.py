"""An OpenAPI 3.1 document for the prediction routes: legacy `/predict`, V1 and V2 REST.

Each feature's name, order, bounds and description come from `HousingFeatures`, the single
source of truth; this module adds only what its JSON Schema cannot say: values must be
finite doubles (`allow_inf_nan=False`), and an FP32 tensor holds float32s. kserve's own
FastAPI document does not describe our bodies, so this one is served at `OPENAPI_PATH`.
"""

from __future__ import annotations

import math
import sys
from typing import Any, Final

import numpy as np
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from predictor.protocol.schema import FEATURES, N_FEATURES, HousingFeatures

OPENAPI_PATH: Final = "/openapi/housing.json"
_JSON: Final = "application/json"

Schema = dict[str, Any]


def openapi_document(model_name: str = "housing", max_batch_size: int = 1000) -> Schema:
    """The document for a server started with these `--model_name` and `--max_batch_size`."""
    v1 = f"/v1/models/{model_name}"
    v2 = f"/v2/models/{model_name}"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "housing-predictor",
            "version": "1",
            "description": "California house-price predictions (units of 100,000 USD). "
            "Every route shares one validation, one cache and one model.",
        },
        "paths": {
            "/predict": _legacy_predict(max_batch_size),
            "/explain": _legacy_predict(max_batch_size, explain=True),
            f"{v1}:predict": _v1_predict(max_batch_size),
            f"{v1}:explain": _v1_predict(max_batch_size, explain=True),
            f"{v2}/infer": _v2_infer(max_batch_size),
            v1: _get("Model readiness (V1)", _V1_READY),
            v2: _get("Model metadata (V2)", _V2_METADATA),
            "/health": _health(),
            "/v2/health/live": _get("Liveness", _flag("live")),
            "/v2/health/ready": _get("Readiness", _flag("ready")),
            f"{v2}/ready": _get("Model readiness (V2)", _V2_READY),
            f"{v2}/versions/{{version}}": _versioned(_get("Model metadata", _V2_METADATA)),
            f"{v2}/versions/{{version}}/ready": _versioned(_get("Model readiness", _V2_READY)),
            f"{v2}/versions/{{version}}/infer": _versioned(_v2_infer(max_batch_size)),
            "/v2": _get("Server metadata: the extensions served", _SERVER_METADATA),
            "/v2/models": _get("The models served (V2)", _MODEL_LIST),
            "/v1/models": _get("The models served (V1)", _MODEL_LIST),
            "/v2/repository/models/{name}/load": _repository("Load a model"),
            "/v2/repository/models/{name}/unload": _repository("Unload a model"),
            "/": _get("Liveness (kserve's)", {"type": "object"}),
            "/metrics": _text_get("Prometheus metrics", "text/plain"),
            "/docs": _text_get("Swagger UI over this document", "text/html"),
            "/docs/assets/{path}": _asset(),
            OPENAPI_PATH: _get("This document", {"type": "object"}),
            "/openapi.json": _get("FastAPI's document of kserve's own routes", {"type": "object"}),
        },
        "components": {
            "schemas": {
                "HousingFeatures": _features_object(),
                "FeatureArray": _row_array(_feature_schemas("FP64")),
                "Error": _ERROR,
            }
        },
    }


def openapi_route(model_name: str = "housing", max_batch_size: int = 1000) -> Route:
    """`GET OPENAPI_PATH`: the document, rendered once."""
    body = orjson.dumps(openapi_document(model_name, max_batch_size))

    async def openapi(request: Request) -> Response:
        return Response(body, media_type=_JSON)

    return Route(OPENAPI_PATH, openapi, methods=["GET"], name="housing_openapi")


# -- features ---------------------------------------------------------------------------


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _feature_schemas(datatype: str) -> dict[str, Schema]:
    """Each feature's schema from `HousingFeatures`, its bounds restated for JSON numbers
    read as `datatype`: FP64 (as JSON objects and arrays are too) or FP32."""
    restate = _fp64_bounds if datatype == "FP64" else _fp32_bounds
    features: dict[str, Schema] = {}
    for name, source in HousingFeatures.model_json_schema()["properties"].items():
        schema = {k: v for k, v in source.items() if k != "title" and k not in _BOUND_KEYWORDS}
        for side, keywords in _SIDES.items():
            bound = next(((k, source[k]) for k in keywords if k in source), None)
            schema.update(restate(side, bound))
        features[name] = schema
    return features


# side (-1 lower, +1 upper): its inclusive and its exclusive keyword
_SIDES: Final = {-1: ("minimum", "exclusiveMinimum"), 1: ("maximum", "exclusiveMaximum")}
_BOUND_KEYWORDS: Final = frozenset(k for keywords in _SIDES.values() for k in keywords)
_FLOAT32_MAX: Final = float(np.finfo(np.float32).max)
_FLOAT32_OVERFLOW: Final = 2.0**128  # the next float32 past the largest, were there one


def _fp64_bounds(side: int, bound: tuple[str, float] | None) -> Schema:
    """A JSON number is checked as the double it reads as, which must be finite.

    (Exactly, numbers up to half-way from the largest double to 2**1024 read as the largest
    double; JSON Schema tools cannot take that bound, an integer beyond any double.)
    """
    return dict([bound]) if bound else {_SIDES[side][0]: side * sys.float_info.max}


def _fp32_bounds(side: int, bound: tuple[str, float] | None) -> Schema:
    """A bound on float32(x), restated as a bound on the JSON number x.

    float32(x) crosses a bound half-way between the float32 on its accepted side and the
    next one out; x exactly half-way rounds to the one of the two whose last bit is even,
    so the restated bound is inclusive when that one is the accepted one. Unbounded sides
    end where float32(x) overflows.
    """
    inclusive, exclusive = _SIDES[side]
    keyword, value = bound or (inclusive, side * _FLOAT32_MAX)
    if keyword == inclusive:
        accepted = np.float32(value)
        refused = _next_float32(accepted, side)
    else:
        accepted = np.float32(_next_float32(np.float32(value), -side))
        refused = float(np.float32(value))
    half_way = (float(accepted) + refused) / 2  # exact: float32s have bits to spare in a double
    even = int(accepted.view(np.uint32)) % 2 == 0
    return {(inclusive if even else exclusive): half_way}


def _next_float32(value: np.float32, direction: int) -> float:
    """The next float32 from `value` in `direction` (+1 up, -1 down), as a double."""
    if abs(float(value)) == _FLOAT32_MAX and math.copysign(1, value) == direction:
        return direction * _FLOAT32_OVERFLOW
    return float(np.nextafter(value, np.float32(direction * math.inf)))


def _features_object() -> Schema:
    schema = HousingFeatures.model_json_schema()
    return {
        "type": "object",
        "description": f"{schema['description']} Extra keys are ignored.",
        "properties": _feature_schemas("FP64"),
        "required": list(FEATURES),
    }


def _row_array(features: dict[str, Schema]) -> Schema:
    """A row as an array of the feature values in schema order."""
    return {
        "type": "array",
        "description": "The features in order: " + ", ".join(FEATURES) + ".",
        "prefixItems": [features[name] for name in FEATURES],
        "items": False,
        "minItems": N_FEATURES,
        "maxItems": N_FEATURES,
    }


# The sample block group of the original service's README: "Try it out" on /docs sends it.
EXAMPLE_ROW: Final = {
    "MedInc": 8.3252,
    "HouseAge": 42.0,
    "AveRooms": 6.98,
    "AveBedrms": 1.02,
    "Population": 322.0,
    "AveOccup": 2.55,
    "Latitude": 37.88,
    "Longitude": -122.23,
}
_EXAMPLE_VALUES: Final = [EXAMPLE_ROW[name] for name in FEATURES]


# -- responses ----------------------------------------------------------------------------

_ERROR: Final = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string", "description": "What is wrong, for a person."}},
}
_PREDICTION_HEADERS: Final = {
    "X-Model-Version": {
        "required": True,
        "description": "The model version that answered: the first 16 hex digits of the "
        "sha256 of its artifact (as in V2 `model_version` and the cache keys).",
        "schema": {"type": "string", "pattern": "^[0-9a-f]{16}$"},
    },
    "X-Cache": {
        "required": True,
        "description": "HIT: every row came from the cache; PARTIAL: some did; MISS: none.",
        "schema": {"type": "string", "enum": ["HIT", "PARTIAL", "MISS"]},
    },
}
_V1_READY: Final = {
    "type": "object",
    "required": ["name", "ready"],
    "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}},
}
_METADATA_TENSOR: Final = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {
        "name": {"type": "string"},
        "datatype": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
    },
}
_V2_METADATA: Final = {
    "type": "object",
    "required": ["name", "platform", "inputs", "outputs"],
    "properties": {
        "name": {"type": "string"},
        "versions": {"type": ["array", "null"], "items": {"type": "string"}},
        "platform": {"type": "string"},
        "inputs": {"type": "array", "items": _METADATA_TENSOR},
        "outputs": {"type": "array", "items": _METADATA_TENSOR},
    },
}


_V2_READY: Final = {
    "type": "object",
    "required": ["name", "ready"],
    "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}},
}
_SERVER_METADATA: Final = {
    "type": "object",
    "required": ["name", "version", "extensions"],
    "properties": {
        "name": {"type": "string"},
        "version": {"type": "string"},
        "extensions": {"type": "array", "items": {"type": "string"}},
    },
}
_MODEL_LIST: Final = {
    "type": "object",
    "required": ["models"],
    "properties": {"models": {"type": "array", "items": {"type": "string"}}},
}


def _versioned(path_item: Schema) -> Schema:
    """A route under `/versions/{version}`: the served version answers like the unversioned
    route, any other is a 404."""
    version = {
        "name": "version",
        "in": "path",
        "required": True,
        "description": "The served model version (X-Model-Version); any other is a 404.",
        "schema": {"type": "string"},
    }
    operations = {}
    for method, operation in path_item.items():
        responses = {**operation["responses"], "404": _error("Not the served version.")}
        operations[method] = {**operation, "parameters": [version], "responses": responses}
    return operations


def _repository(summary: str) -> Schema:
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "post": {
            "summary": f"{summary} (the V2 repository extension, off by default)",
            "parameters": [name],
            "responses": {
                "200": _json_response("Done.", {"type": "object"}),
                "403": _error("The repository API is off (--enable_model_repository)."),
                "404": _error("No such model."),
            },
        }
    }


def _text_get(summary: str, media_type: str) -> Schema:
    ok = {"description": "OK", "content": {media_type: {"schema": {"type": "string"}}}}
    return {"get": {"summary": summary, "responses": {"200": ok}}}


def _asset() -> Schema:
    path = {"name": "path", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "get": {
            "summary": "Swagger UI's files, served offline",
            "parameters": [path],
            "responses": {
                "200": {"description": "The file.", "content": {"*/*": {}}},
                "404": {"description": "No such file."},
            },
        }
    }


def _flag(name: str) -> Schema:
    return {"type": "object", "required": [name], "properties": {name: {"type": "boolean"}}}


def _json_response(description: str, schema: Schema, **extra: Any) -> Schema:
    return {"description": description, "content": {_JSON: {"schema": schema}}, **extra}


def _error(description: str) -> Schema:
    return _json_response(description, _ref("Error"))


def _get(summary: str, schema: Schema) -> Schema:
    return {"get": {"summary": summary, "responses": {"200": _json_response("OK", schema)}}}


def _health() -> Schema:
    status = {"type": "object", "required": ["status"], "properties": {"status": {}}}
    healthy = {**status, "properties": {"status": {"const": "healthy"}}}
    return {
        "get": {
            "summary": "Health (the original service's): 200 while the model is loaded",
            "responses": {
                "200": _json_response("The model is loaded.", healthy),
                "503": _json_response("The model is not loaded.", status),
            },
        }
    }


def _predict(
    summary: str,
    body: Schema,
    answer: Schema,
    errors: dict[str, Schema],
    bad_request: str,
    example: Any,
    binary_answer: bool = False,
) -> Schema:
    ok = _json_response("One prediction per row, in order.", answer, headers=_PREDICTION_HEADERS)
    if binary_answer:
        ok["content"]["application/octet-stream"] = {
            "schema": {
                "description": "The binary tensor extension: a JSON answer of "
                "Inference-Header-Content-Length bytes (its output says binary_data_size), "
                "then the output's little-endian float64s."
            }
        }
        ok["headers"] = {
            **_PREDICTION_HEADERS,
            "Inference-Header-Content-Length": {
                "description": "With a binary answer only: the length of its JSON part.",
                "schema": {"type": "string", "pattern": "^[0-9]+$"},
            },
        }
    responses = {
        "200": ok,
        "400": _error(bad_request),
        "413": _error("The body is larger than --max_body_bytes."),
        "415": _error("A declared Content-Type other than JSON (no Content-Type is read as JSON)."),
        "503": _json_response(
            "Overloaded (retry after Retry-After seconds), or the model is not ready.",
            _ref("Error"),
            headers={"Retry-After": {"schema": {"type": "string"}}},
        ),
        **errors,
    }
    return {
        "post": {
            "summary": summary,
            "requestBody": {
                "required": True,
                "content": {_JSON: {"schema": body, "example": example}},
            },
            "responses": responses,
        }
    }


_MALFORMED: Final = (
    "Malformed JSON: bad syntax, a duplicate key, NaN or Infinity, over-deep nesting"
)


# -- the three prediction routes -----------------------------------------------------------


def _contributions() -> Schema:
    return {
        "type": "object",
        "description": "Each feature's TreeSHAP contribution: with the base value, they sum "
        "to the prediction.",
        "properties": {name: {"type": "number"} for name in FEATURES},
        "required": list(FEATURES),
        "additionalProperties": False,
    }


_BASE_VALUE: Final = {
    "type": "number",
    "description": "The model's mean prediction over its training data.",
}
_NOT_EXPLAINABLE: Final = "The served model does not explain (only hgb, a tree model, does)."


def _legacy_predict(max_batch_size: int, explain: bool = False) -> Schema:
    body = {
        "type": "array",
        "minItems": 1,
        "maxItems": max_batch_size,
        "items": _ref("HousingFeatures"),
    }
    answer: Schema = {
        "type": "object",
        "required": ["query_key", "inputs", "prediction"],
        "additionalProperties": False,
        "properties": {
            "query_key": {
                "type": "string",
                "pattern": "^[0-9a-f]{32}$",
                "description": "md5 of the request's canonical form (see docs/api.md).",
            },
            "inputs": {
                "type": "array",
                "description": "The rows as read: the 8 features as floats.",
                "items": {
                    "type": "object",
                    "properties": {name: {"type": "number"} for name in FEATURES},
                    "required": list(FEATURES),
                    "additionalProperties": False,
                },
            },
            "prediction": {"type": "array", "items": {"type": "number"}},
        },
    }
    if explain:
        answer["required"] = ["query_key", "inputs", "prediction", "base_value", "contributions"]
        answer["properties"]["base_value"] = _BASE_VALUE
        answer["properties"]["contributions"] = {"type": "array", "items": _contributions()}
    detail_item = {
        "type": "object",
        "required": ["loc", "msg"],
        "properties": {
            "loc": {
                "type": "array",
                "description": '["body"], or ["body", row index] and the field, if any.',
                "items": {"type": ["string", "integer"]},
            },
            "msg": {"type": "string"},
        },
    }
    invalid = {
        "type": "object",
        "required": ["error", "detail"],
        "properties": {
            "error": {"type": "string"},
            "detail": {"type": "array", "items": detail_item},
        },
    }
    errors = {
        "422": _json_response(
            "An invalid row or field (every one is listed), or more rows than "
            "--max_batch_size: nothing is predicted.",
            invalid,
        ),
    }
    if explain:
        errors["501"] = _error(_NOT_EXPLAINABLE)
    api = "the original system's API"
    return _predict(
        f"Explain house values ({api}, with TreeSHAP)"
        if explain
        else f"Predict house values ({api})",
        body,
        answer,
        errors,
        _MALFORMED,
        [EXAMPLE_ROW],
    )


def _v1_predict(max_batch_size: int, explain: bool = False) -> Schema:
    instance = {"anyOf": [_ref("HousingFeatures"), _ref("FeatureArray")]}
    rows = {"type": "array", "minItems": 1, "maxItems": max_batch_size, "items": instance}
    # KServe's V1 protocol names the rows `instances` or `inputs`: one of the two.
    body = {
        "oneOf": [
            {
                "type": "object",
                "required": [key],
                "properties": {key: rows, other: False},
            }
            for key, other in (("instances", "inputs"), ("inputs", "instances"))
        ]
    }
    answer = {
        "type": "object",
        "required": ["predictions"],
        "properties": {"predictions": {"type": "array", "items": {"type": "number"}}},
    }
    if explain:
        explanation = {
            "type": "object",
            "required": ["prediction", "base_value", "contributions"],
            "properties": {
                "prediction": {"type": "number"},
                "base_value": _BASE_VALUE,
                "contributions": _contributions(),
            },
        }
        answer = {
            "type": "object",
            "required": ["explanations"],
            "properties": {"explanations": {"type": "array", "items": explanation}},
        }
    bad_request = (
        f"{_MALFORMED}; an invalid instance or field; or more instances than --max_batch_size."
    )
    return _predict(
        "Explain house values (KServe V1, TreeSHAP)"
        if explain
        else "Predict house values (KServe V1)",
        body,
        answer,
        {"501": _error(_NOT_EXPLAINABLE)} if explain else {},
        bad_request,
        {"instances": [EXAMPLE_ROW]},
    )


# kserve's request model takes null for every optional member.
_PARAMETERS: Final = {
    "type": ["object", "null"],
    "additionalProperties": {"type": ["string", "number", "boolean"]},
}


def _parameters(**known: Schema | bool) -> Schema:
    """Parameters with some names reserved by the binary tensor extension."""
    return {**_PARAMETERS, "properties": known}


def _tensor(datatype: str, max_batch_size: int) -> Schema:
    return {
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"type": "string"},
            "shape": {
                "type": "array",
                "description": "[N, 8]: N rows of the 8 features. N must be the number of "
                "rows in `data` (JSON Schema cannot say so).",
                "prefixItems": [
                    {"type": "integer", "minimum": 1, "maximum": max_batch_size},
                    {"const": N_FEATURES},
                ],
                "items": False,
                "minItems": 2,
            },
            "datatype": {"const": datatype},
            "data": {
                "type": "array",
                "description": "The rows; a flat row-major array of N x 8 numbers is also taken.",
                "minItems": 1,
                "maxItems": max_batch_size,
                "items": _row_array(_feature_schemas(datatype)),
            },
            # Only in a binary-extension body (Inference-Header-Content-Length), which this
            # JSON document does not describe.
            "parameters": _parameters(binary_data_size=False),
        },
    }


def _requested_output(*names: str) -> Schema:
    return {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"enum": list(names)},
            "parameters": _parameters(
                binary_data={
                    "type": "boolean",
                    "description": "In binary or not, whatever binary_data_output says.",
                }
            ),
        },
    }


def _v2_infer(max_batch_size: int) -> Schema:
    fp64, fp32 = (_tensor(datatype, max_batch_size) for datatype in ("FP64", "FP32"))
    body = {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": ["string", "null"]},
            "parameters": _parameters(
                binary_data_output={
                    "type": "boolean",
                    "description": "true: answer with the binary tensor extension.",
                }
            ),
            "inputs": {
                "type": "array",
                "description": "Exactly one input tensor, FP64 or FP32 (widened through "
                "each value's shortest decimal form).",
                "minItems": 1,
                "maxItems": 1,
                "items": {"oneOf": [fp64, fp32]},
            },
            "outputs": {
                "type": ["array", "null"],
                "description": "The outputs to answer with, in this order (default: predict): "
                "predict, and treeshap_output ([N, 9]: each row's 8 TreeSHAP contributions "
                "in feature order, then the base value; Triton FIL's layout); each at most "
                "once.",
                "anyOf": [
                    {"maxItems": 1, "items": _requested_output("predict", "treeshap_output")},
                    *(
                        {
                            "minItems": 2,
                            "maxItems": 2,
                            "prefixItems": [_requested_output(a), _requested_output(b)],
                        }
                        for a, b in (
                            ("predict", "treeshap_output"),
                            ("treeshap_output", "predict"),
                        )
                    ),
                ],
            },
        },
    }
    output = {
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"enum": ["predict", "treeshap_output"]},
            "shape": {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 2},
            "datatype": {"const": "FP64"},
            "parameters": {"type": ["object", "null"]},
            "data": {"type": "array", "items": {"type": "number"}},
        },
    }
    answer = {
        "type": "object",
        "required": ["model_name", "id", "outputs"],
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": ["string", "null"]},
            "id": {"type": "string", "description": "The request's id, or a new UUID."},
            "parameters": {"type": ["object", "null"]},
            "outputs": {"type": "array", "items": output, "minItems": 1, "maxItems": 2},
        },
    }
    unprocessable = _json_response(
        "The body is not a V2 inference request (FastAPI's validation error).",
        {"type": "object", "required": ["detail"], "properties": {"detail": {"type": "array"}}},
    )
    bad_request = (
        f"{_MALFORMED}; not one FP32 or FP64 tensor of shape [N, 8] "
        "with N x 8 numbers; an invalid value; an unknown output; a malformed binary "
        "tensor extension; or more rows than --max_batch_size."
    )
    example = {
        "inputs": [
            {"name": "input-0", "shape": [1, 8], "datatype": "FP64", "data": [_EXAMPLE_VALUES]}
        ]
    }
    return _predict(
        "Predict house values (Open Inference Protocol, V2)",
        body,
        answer,
        {"422": unprocessable, "501": _error(f"treeshap_output asked: {_NOT_EXPLAINABLE}")},
        bad_request,
        example,
        binary_answer=True,
    )
