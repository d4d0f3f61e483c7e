"""The OpenAPI document: valid, generated from `HousingFeatures`, and saying exactly what the
validators accept, down to the last float32 at each bound."""

from __future__ import annotations

import asyncio
import json
import math
import sys
from typing import Any

import httpx
import jsonschema
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate
from starlette.applications import Starlette

from harness.payloads import sample_row
from predictor.protocol.schema import (
    FEATURES,
    HousingFeatures,
    InvalidRows,
    validate_arrays,
    validate_objects,
)
from predictor.rest.openapi import OPENAPI_PATH, openapi_document, openapi_route

DOCUMENT = openapi_document()
V2_INFER = "/v2/models/housing/infer"
GOOD = sample_row()


def validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """A validator for a schema inside the document (its `$ref`s resolve)."""
    return jsonschema.Draft202012Validator({**schema, "components": DOCUMENT["components"]})


def request_schema(path: str) -> dict[str, Any]:
    schema: dict[str, Any] = DOCUMENT["paths"][path]["post"]["requestBody"]["content"][
        "application/json"
    ]["schema"]
    return schema


def tensor_row_schema(datatype: str) -> dict[str, Any]:
    """The schema of one row of a V2 tensor of `datatype`."""
    tensors = request_schema(V2_INFER)["properties"]["inputs"]["items"]["oneOf"]
    [tensor] = [t for t in tensors if t["properties"]["datatype"] == {"const": datatype}]
    row: dict[str, Any] = tensor["properties"]["data"]["items"]
    return row


def test_is_a_valid_openapi_3_1_document() -> None:
    assert DOCUMENT["openapi"].startswith("3.1")
    validate(DOCUMENT)


def test_the_route_serves_the_document() -> None:
    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=Starlette(routes=[openapi_route()]))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(OPENAPI_PATH)

    response = asyncio.run(get())
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == json.loads(json.dumps(DOCUMENT))


def test_model_name_and_batch_size_are_the_servers() -> None:
    document = openapi_document(model_name="other", max_batch_size=7)
    assert "/v1/models/other:predict" in document["paths"]
    assert "/v2/models/other/infer" in document["paths"]
    assert (
        document["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"][
            "schema"
        ]["maxItems"]
        == 7
    )


def test_features_are_the_pydantic_models() -> None:
    model = HousingFeatures.model_json_schema()
    features = DOCUMENT["components"]["schemas"]["HousingFeatures"]
    assert list(features["properties"]) == list(FEATURES) == list(model["properties"])
    assert features["required"] == model["required"]
    rows = [DOCUMENT["components"]["schemas"]["FeatureArray"]]
    rows += [tensor_row_schema(datatype) for datatype in ("FP64", "FP32")]
    for name, feature in features["properties"].items():
        assert feature["description"] == model["properties"][name]["description"]
        for row in rows:
            item = row["prefixItems"][FEATURES.index(name)]
            assert item["description"] == feature["description"]
    assert features["properties"]["Latitude"]["minimum"] == -90
    assert features["properties"]["MedInc"]["exclusiveMinimum"] == 0


def read_by_server(value: Any) -> Any:
    """A value as the server reads it from JSON (orjson: numbers as doubles), or a marker
    when JSON cannot carry it."""
    try:
        return orjson.loads(json.dumps(value))
    except (orjson.JSONDecodeError, ValueError):
        return None


def accepts(validate_rows: Any, row: Any) -> bool:
    try:
        validate_rows([row])
    except InvalidRows:
        return False
    return True


EDGES = [
    0.0, -0.0, 5e-324, -5e-324, 1e-9, 90.0, -90.0, 180.0, -180.0, sys.float_info.max,
    math.nextafter(90.0, math.inf), math.nextafter(-180.0, -math.inf),
]  # fmt: skip
values = (
    st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(EDGES)
    | st.integers(-(10**300), 10**300)
    | st.sampled_from([None, True, "1.0", [1.0]])
)


@settings(max_examples=300, derandomize=True)
@given(
    st.fixed_dictionaries({}, optional={name: values for name in FEATURES}),
    st.dictionaries(st.sampled_from(["id", "note"]), values),
)
def test_the_schema_accepts_exactly_the_rows_the_validator_accepts(
    row: dict[str, Any], extra: dict[str, Any]
) -> None:
    obj = read_by_server({**GOOD, **row, **extra})
    features = DOCUMENT["components"]["schemas"]["HousingFeatures"]
    assert validator(features).is_valid(obj) == accepts(validate_objects, obj)
    array = read_by_server([{**GOOD, **row}[name] for name in FEATURES])
    feature_array = DOCUMENT["components"]["schemas"]["FeatureArray"]
    assert validator(feature_array).is_valid(array) == accepts(validate_arrays, array)


def bound_probes(datatype: str) -> list[Any]:
    """For each bound of each feature: the bound and the doubles either side of it."""
    probes = []
    for index, feature in enumerate(tensor_row_schema(datatype)["prefixItems"]):
        for keyword in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
            if keyword in feature:
                bound = float(feature[keyword])
                for value in (
                    math.nextafter(bound, -math.inf),
                    bound,
                    math.nextafter(bound, math.inf),
                ):
                    if math.isfinite(value):
                        probe_id = f"{datatype}-{FEATURES[index]}-{value!r}"
                        probes.append(pytest.param(index, value, id=probe_id))
    return probes


@pytest.mark.parametrize(("datatype", "index", "value"), [
    (datatype, *probe.values) for datatype in ("FP64", "FP32") for probe in bound_probes(datatype)
])  # fmt: skip
def test_bounds_are_exact_on_the_server(
    client: httpx.Client, datatype: str, index: int, value: float
) -> None:
    """A V2 tensor with one value at or beside a documented bound: the server accepts it
    exactly when the document says it is valid (float32 rounding included)."""
    row = [GOOD[name] for name in FEATURES]
    row[index] = value
    tensor = {"name": "input-0", "shape": [1, len(row)], "datatype": datatype, "data": [row]}
    valid = validator(tensor_row_schema(datatype)).is_valid(row)
    response = client.post(V2_INFER, json={"inputs": [tensor]})
    assert response.status_code == (200 if valid else 400), response.text
    if not valid:
        assert FEATURES[index] in response.json()["error"]


def test_fp32_bounds_sit_half_way_to_the_next_float32() -> None:
    row = tensor_row_schema("FP32")["prefixItems"]
    latitude = row[FEATURES.index("Latitude")]
    # 90 and the next float32 up, 90 + 2**-17: half-way rounds to 90 (even), so inclusive.
    assert latitude["maximum"] == 90 + 2**-18
    medinc = row[FEATURES.index("MedInc")]
    # Half-way from 0 to the least float32 rounds to 0 (even): refused, so exclusive.
    assert medinc["exclusiveMinimum"] == 2.0**-150
    # Half-way from the largest float32 to 2**128 rounds up and overflows: exclusive.
    assert medinc["exclusiveMaximum"] == 2.0**128 - 2.0**103
