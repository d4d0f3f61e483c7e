"""The Open Inference Protocol's own REST spec, as KServe publishes it, against a real server.

`tests/data/open_inference_rest.yaml` is KServe's `docs/predict-api/v2/rest_predict_v2.yaml`,
unchanged. Two of its spellings are not OpenAPI's and are read as they are meant before
schemathesis generates from it: path parameters written `${NAME}` (OpenAPI's `{NAME}`), and
server metadata at `/v2/` (the protocol's text says `GET v2`; this server answers `/v2`
and refuses trailing slashes rather than redirecting). Model routes are sent for the served
model and version, which is what the protocol describes; other names are
tests/test_conformance.py's 404s.

Every request the spec allows must be answered without a 5xx, with JSON where the spec
says JSON, and every documented answer's body must match the spec's schema. The spec lets
a client send any tensor (any name, shape or type), so a 400 for a tensor this model
cannot take is in the spec too; what is asserted of those is the spec's error schema.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
import schemathesis
import yaml
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from harness.server import REPO, ServerProcess

SPEC_PATH: Final = REPO / "tests" / "data" / "open_inference_rest.yaml"
MAX_EXAMPLES: Final = 40
CHECKS: Final = [not_a_server_error, content_type_conformance, response_schema_conformance]


def read_spec(path: Path) -> dict[str, Any]:
    """The spec with `${NAME}` path parameters as `{NAME}` and `/v2/` as `/v2`."""
    spec: dict[str, Any] = yaml.safe_load(path.read_text())
    paths = {}
    for route, item in spec["paths"].items():
        route = re.sub(r"\$\{(\w+)\}", r"{\1}", route)
        paths[route.rstrip("/") if route != "/" else route] = item
    spec["paths"] = paths
    return spec


SPEC: Final = read_spec(SPEC_PATH)
schema = schemathesis.openapi.from_dict(SPEC)
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE], max_examples=MAX_EXAMPLES, deterministic=True
)


@pytest.fixture(scope="module")
def served(server: ServerProcess) -> dict[str, str]:
    """The path parameters of the served model: its name and its one version."""
    metadata = httpx.get(f"{server.base_url}/v2/models/housing", timeout=30.0).json()
    return {"MODEL_NAME": metadata["name"], "MODEL_VERSION": metadata["versions"][0]}


def test_the_spec_reads_as_openapi_with_the_protocol_routes() -> None:
    assert {
        "/v2/health/live",
        "/v2/health/ready",
        "/v2",
        "/v2/models/{MODEL_NAME}/versions/{MODEL_VERSION}",
        "/v2/models/{MODEL_NAME}/versions/{MODEL_VERSION}/ready",
        "/v2/models/{MODEL_NAME}/versions/{MODEL_VERSION}/infer",
    } <= set(SPEC["paths"])


@schema.parametrize()
def test_what_the_spec_allows_is_answered_as_the_spec_says(
    case: Case[Any], server: ServerProcess, served: dict[str, str]
) -> None:
    if case.path_parameters:
        case.path_parameters = {**case.path_parameters, **served}
    response = case.call(base_url=server.base_url)
    case.validate_response(response, checks=CHECKS)
    if "/infer" in case.path:
        # A tensor the model can take is answered; any other is a 400 naming the problem.
        assert response.status_code in (200, 400), response.text
        if response.status_code == 400:
            assert response.json()["error"]
