"""Property-based API tests: schemathesis generates requests from `predictor.rest.openapi`'s
document and sends them to a real server.

Positive mode: every schema-valid request must be answered 2xx. Negative mode: every
schema-violating request must be refused with a 4xx. In both, never a 5xx, and every answer
must match the document (status code, content type, headers, body schema). Generation is
deterministic and bounded, so a run is repeatable and short.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import orjson
import schemathesis
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from harness.server import ServerProcess
from predictor.rest.openapi import openapi_document

DOCUMENT = openapi_document()
MAX_EXAMPLES = 60
CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


# Left to tests with the right inputs: the versioned routes (test_http_routes: any other
# version is a 404), the repository API (403: off) and Swagger UI's files (test_docs_page).
NOT_GENERATED = r"/versions/|/repository/|/docs/assets/"


def schema_for(mode: GenerationMode) -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_dict(DOCUMENT).exclude(path_regex=NOT_GENERATED)
    schema.config.generation.update(modes=[mode], max_examples=MAX_EXAMPLES, deterministic=True)
    return schema


positive = schema_for(GenerationMode.POSITIVE)
# Only request bodies can be made invalid: the GET routes take no input.
negative = schema_for(GenerationMode.NEGATIVE).include(method="POST")


def with_consistent_shape(case: Case[Any]) -> None:
    """Set a V2 tensor's row count to its rows: a rule JSON Schema cannot state."""
    if case.path.endswith("/infer"):
        body: Any = case.body
        tensor = body["inputs"][0]
        tensor["shape"] = [len(tensor["data"]), tensor["shape"][1]]


def reads_as_valid(case: Case[Any]) -> bool:
    """Whether the body, read as the server reads JSON (numbers as doubles), meets the
    schema after all: an integer a hair past the largest double reads as that double."""
    operation = DOCUMENT["paths"][case.path].get(case.method.lower(), {})
    if "requestBody" not in operation or not isinstance(case.body, dict | list):
        return False
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    validator = jsonschema.Draft202012Validator({**schema, "components": DOCUMENT["components"]})
    try:
        body = orjson.loads(json.dumps(case.body))
    except orjson.JSONDecodeError:  # a number past any double: refused, as it should be
        return False
    return bool(validator.is_valid(body))


@positive.parametrize()
def test_valid_requests_are_answered_as_documented(case: Case[Any], server: ServerProcess) -> None:
    with_consistent_shape(case)
    case.call_and_validate(
        base_url=server.base_url, checks=[*CONFORMANCE, positive_data_acceptance]
    )


@negative.parametrize()
def test_invalid_requests_are_refused_as_documented(case: Case[Any], server: ServerProcess) -> None:
    if reads_as_valid(case):
        return
    case.call_and_validate(base_url=server.base_url, checks=[*CONFORMANCE, negative_data_rejection])
