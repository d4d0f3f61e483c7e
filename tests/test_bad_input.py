"""Bad input against a real server, on every route: a 4xx that says what is wrong, never a
5xx or a hang, and the next good request still gets the right prediction.

Each case names the status docs/api.md documents and a fragment its error message must
hold.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import pytest
from kserve import InferenceGRPCClient
from kserve.protocol.infer_type import InferInput, InferRequest

from harness.payloads import sample_row, sample_values
from harness.server import ServerProcess
from predictor.protocol.schema import FEATURES

pytestmark = pytest.mark.timeout(60)

LEGACY = "/predict"
V1 = "/v1/models/housing:predict"
V2 = "/v2/models/housing/infer"
JSON_TYPE = "application/json"
JSON = {"Content-Type": JSON_TYPE}
MAX_BODY_BYTES = 2 * 1024 * 1024  # the server's default --max_body_bytes
ROW = sample_row()
VALUES = sample_values()
TEN_MB = b"[" + b" " * (10 * 1024 * 1024) + b"]"


# -- the good request, per route -------------------------------------------------------


def v2_body(shape: Any, datatype: str, data: Any) -> bytes:
    tensor = {"name": "input-0", "shape": shape, "datatype": datatype, "data": data}
    return json.dumps({"inputs": [tensor]}).encode()


def with_members(tensor_parameters: Any = None, **members: Any) -> bytes:
    """A good V2 body with request members (or the tensor's parameters) of a wrong type."""
    tensor: dict[str, Any] = {"name": "input-0", "shape": [1, 8], "datatype": "FP64"}
    if tensor_parameters is not None:
        tensor["parameters"] = tensor_parameters
    return json.dumps({**members, "inputs": [{**tensor, "data": VALUES}]}).encode()


def v1_wrap(rows: str) -> str:
    return f'{{"instances": {rows}}}'


GOOD_BODIES = {
    LEGACY: json.dumps([ROW]).encode(),
    V1: v1_wrap(json.dumps([ROW])).encode(),
    V2: v2_body([1, 8], "FP64", VALUES),
}


def good_prediction(client: httpx.Client, path: str) -> float:
    """Send the good row by `path`'s protocol and return its one prediction."""
    response = client.post(path, content=GOOD_BODIES[path], headers=JSON)
    assert response.status_code == 200, response.text
    body = response.json()
    predictions = {LEGACY: "prediction", V1: "predictions"}
    [prediction] = body[predictions[path]] if path in predictions else body["outputs"][0]["data"]
    assert isinstance(prediction, float)
    return prediction


@pytest.fixture(scope="module")
def expected(server: ServerProcess) -> float:
    with httpx.Client(base_url=server.base_url, timeout=30.0) as client:
        return good_prediction(client, LEGACY)


# -- REST cases ------------------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    """One bad REST request and the answer it must get."""

    path: str
    body: bytes
    status: int
    says: str
    """A fragment of the error message (compared case-insensitively)."""
    content_type: str | None = JSON_TYPE
    chunked: bool = False

    def send(self, client: httpx.Client) -> httpx.Response:
        headers = {} if self.content_type is None else {"Content-Type": self.content_type}
        content: bytes | Iterator[bytes] = self.body
        if self.chunked:  # no Content-Length: the body cap must count as it streams in
            step = 1024 * 1024
            content = (self.body[i : i + step] for i in range(0, len(self.body), step))
        return client.post(self.path, content=content, headers=headers)

    def param(self, name: str) -> Any:
        route = {LEGACY: "legacy", V1: "v1", V2: "v2"}[self.path]
        return pytest.param(self, id=f"{route}-{name}")


def field_texts(changes: dict[str, str]) -> list[str]:
    """The good row's values as JSON text, in feature order, some replaced by `changes`."""
    return [changes.get(name, json.dumps(ROW[name])) for name in FEATURES]


def row_text(**changes: str) -> str:
    """The good row as a JSON object, some values replaced by raw JSON text."""
    members = (
        f'"{name}": {value}' for name, value in zip(FEATURES, field_texts(changes), strict=True)
    )
    return "{" + ", ".join(members) + "}"


def listed(*items: str) -> str:
    return "[" + ", ".join(items) + "]"


def rows(**changes: str) -> str:
    """A one-row `/predict` body, some values replaced by raw JSON text."""
    return listed(row_text(**changes))


def tensor(data: str | None = None, extra: str = "", **changes: str) -> str:
    """A one-row V2 body: `data` (default: the good row, some values replaced) and `extra`
    members appended to the tensor object, all as raw JSON text."""
    data = listed(*field_texts(changes)) if data is None else data
    head = '{"inputs": [{"name": "input-0", "shape": [1, 8], "datatype": "FP64", "data": '
    return f"{head}{data}{extra}}}]}}"


DEEP = "[" * 10_000 + "]" * 10_000
HUGE_INTEGER = "1" + "0" * 400
NON_FINITE = "NaN and Infinity are not JSON numbers"
TOO_LARGE = f"exceeds {MAX_BODY_BYTES} bytes"

# Bodies that are not the JSON we take, on every route. name: (the rows of a `/predict`
# body, also sent as V1 `{"instances": rows}`; a V2 body; the message fragment)
JSON_TABLE: dict[str, tuple[str, str, str]] = {
    "malformed": (
        '[{"MedInc": 8.3252 "HouseAge": 42}]',
        '{"inputs": [{"name": "input-0" "shape": [1, 8]}]}',
        "expected ',' or '}'",
    ),
    "nan": (rows(MedInc="NaN"), tensor(MedInc="NaN"), NON_FINITE),
    "infinity": (rows(MedInc="Infinity"), tensor(MedInc="Infinity"), NON_FINITE),
    "minus-infinity": (rows(Latitude="-Infinity"), tensor(Latitude="-Infinity"), NON_FINITE),
    "1e400": (rows(MedInc="1e400"), tensor(MedInc="1e400"), "number is infinity"),
    "huge-integer": (
        rows(Population=HUGE_INTEGER),
        tensor(Population=HUGE_INTEGER),
        "number is infinity",
    ),
    "duplicate-key": (
        listed(row_text()[:-1] + ', "MedInc": 1.0}'),
        tensor(extra=', "datatype": "INT64"'),
        "duplicate key",
    ),
    "escaped-duplicate-key": (
        listed(row_text()[:-1] + ', "Med\\u0049nc": 1.0}'),
        tensor(extra=', "d\\u0061tatype": "INT64"'),
        "duplicate key",
    ),
    "10000-levels": (DEEP, tensor(data=DEEP), "depth limit exceeded"),
}


def json_cases() -> list[Any]:
    cases = []
    for name, (items, v2, says) in JSON_TABLE.items():
        cases += [
            Bad(LEGACY, items.encode(), 400, says).param(name),
            Bad(V1, v1_wrap(items).encode(), 400, says).param(name),
            Bad(V2, v2.encode(), 400, says).param(name),
        ]
    return cases


NOT_A_NUMBER = "Input should be a valid number"
MISSING = json.dumps([{k: v for k, v in ROW.items() if k != "MedInc"}])

# Rows the schema refuses. name: (the rows, legacy status, V1 status, message fragment)
ROWS_TABLE: dict[str, tuple[str, int, int, str]] = {
    "empty-list": ("[]", 422, 400, "expected at least one item"),
    "non-objects": ('[1, "a", null, true]', 422, 400, "item 3: expected an object"),
    "missing-field": (MISSING, 422, 400, "item 0, field 'MedInc': Field required"),
    "string-for-number": (rows(HouseAge='"42"'), 422, 400, f"'HouseAge': {NOT_A_NUMBER}"),
    "boolean-for-number": (
        listed(row_text(), row_text(AveRooms="true")), 422, 400,
        f"item 1, field 'AveRooms': {NOT_A_NUMBER}",
    ),
    "null-for-number": (rows(Longitude="null"), 422, 400, f"'Longitude': {NOT_A_NUMBER}"),
    "out-of-bounds": (rows(Latitude="90.5"), 422, 400, "'Latitude': Input should be less"),
    "1001-rows": (json.dumps([ROW] * 1001), 422, 400, "exceed max_batch_size 1000"),
    "100000-rows": (json.dumps([ROW] * 100_000), 413, 413, TOO_LARGE),
}  # fmt: skip


def rows_cases() -> list[Any]:
    """Each row of ROWS_TABLE for `/predict` (the list) and V1 (`{"instances": list}`)."""
    cases = []
    for name, (items, legacy_status, v1_status, says) in ROWS_TABLE.items():
        cases += [
            Bad(LEGACY, items.encode(), legacy_status, says).param(name),
            Bad(V1, v1_wrap(items).encode(), v1_status, says).param(name),
        ]
    return cases


NO_DATA = b'{"inputs": [{"name": "input-0", "shape": [1, 8], "datatype": "FP64"}]}'


def body_cases() -> list[Any]:
    """Cases on the body as a whole (its type and size) and on its Content-Type."""
    cases = {
        "empty-body": [Bad(path, b"", 400, "empty document") for path in (LEGACY, V1, V2)],
        "wrong-top-level": [
            Bad(LEGACY, GOOD_BODIES[V1], 422, "expected a JSON list"),
            Bad(V1, GOOD_BODIES[LEGACY], 400, 'expected a JSON object {"instances"'),
            Bad(V2, b"[]", 400, "inputs"),
        ],
        "inputs-not-a-list": [Bad(V2, b'{"inputs": 1}', 400, "inputs")],
        "tensor-without-data": [Bad(V2, NO_DATA, 400, "data")],
        "shape-of-strings": [Bad(V2, v2_body(["a", 8], "FP64", VALUES), 400, "shape")],
        "v2-member-types": [
            Bad(V2, with_members(id=5), 400, "id must be a string"),
            Bad(V2, with_members(parameters={"a": [1]}), 400, "parameters must map names"),
            Bad(V2, with_members(outputs=3), 400, "outputs must be an array"),
            Bad(V2, with_members(outputs=[{}]), 400, "outputs[0] must be an object"),
            Bad(V2, with_members(tensor_parameters=5), 400, "inputs[0].parameters must be"),
        ],
        # No Content-Type is JSON (tests/test_clients.py); a declared other type is not.
        "text-plain": [
            Bad(path, GOOD_BODIES[path], 415, "send application/json", "text/plain")
            for path in (LEGACY, V1, V2)
        ],
        "xml": [
            Bad(path, GOOD_BODIES[path], 415, "send application/json", "application/xml")
            for path in (LEGACY, V1, V2)
        ],
        "100000-rows": [Bad(V2, v2_body([100_000, 8], "FP64", VALUES * 100_000), 413, TOO_LARGE)],
        "10MB": [Bad(path, TEN_MB, 413, TOO_LARGE) for path in (LEGACY, V1, V2)],
        "10MB-chunked": [
            Bad(path, TEN_MB, 413, TOO_LARGE, chunked=True) for path in (LEGACY, V1, V2)
        ],
    }
    return [case.param(name) for name, bads in cases.items() for case in bads]


# -- tensor cases: V2 REST and gRPC ------------------------------------------------------


@dataclass(frozen=True)
class BadTensors:
    """Input tensors that V2 REST must answer with 400 and gRPC with `code`."""

    says: str
    shape: list[int] = field(default_factory=lambda: [1, 8])
    data: list[Any] = field(default_factory=lambda: list(VALUES))
    datatype: str = "FP64"
    count: int = 1
    """How many copies of the tensor the request holds."""
    code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT

    def rest(self) -> Bad:
        tensor = {"name": "input-0", "shape": self.shape, "datatype": self.datatype}
        body = json.dumps({"inputs": [{**tensor, "data": self.data}] * self.count}).encode()
        return Bad(V2, body, 400, self.says)

    def grpc_request(self) -> InferRequest:
        tensors = [
            InferInput(name="input-0", shape=self.shape, datatype=self.datatype, data=self.data)
            for _ in range(self.count)
        ]
        return InferRequest(model_name="housing", infer_inputs=tensors)

    def param(self, name: str) -> Any:
        return pytest.param(self, id=name)


FINITE = "Input should be a finite number"
TENSOR_CASES = {
    "7-columns": BadTensors("input shape must be [N, 8], got [1, 7]", [1, 7], VALUES[:7]),
    "rows-and-data-disagree": BadTensors("does not match shape [2, 8]", [2, 8]),
    "negative-dimension": BadTensors("shape", [-1, 8]),
    "zero-rows": BadTensors("N >= 1, got [0, 8]", [0, 8], []),
    "3-dimensions": BadTensors("got [1, 1, 8]", [1, 1, 8]),
    "bool": BadTensors("FP32 or FP64, got BOOL", datatype="BOOL", data=[True] * 8),
    "bytes": BadTensors("FP32 or FP64, got BYTES", datatype="BYTES", data=["a"] * 8),
    "no-input": BadTensors("exactly one input tensor, got 0", count=0),
    "two-inputs": BadTensors("exactly one input tensor, got 2", count=2),
    "out-of-bounds": BadTensors(
        "'Longitude': Input should be >= -180 and <= 180", data=[*VALUES[:7], 200.0]
    ),
    "1001-rows": BadTensors("1001 rows exceed max_batch_size 1000", [1001, 8], VALUES * 1001),
}
REST_ONLY_TENSOR_CASES = {
    name: BadTensors("input data must hold numbers only", data=[value] * 8)
    for name, value in (("strings", "8.3"), ("nulls", None), ("booleans", True))
}
# Not JSON (see JSON_TABLE) or over the body cap (see body_cases) as REST.
GRPC_ONLY_TENSOR_CASES = {
    "nan": BadTensors(f"'MedInc': {FINITE}", data=[math.nan, *VALUES[1:]]),
    "infinity": BadTensors(f"'Latitude': {FINITE}", data=[*VALUES[:6], math.inf, VALUES[7]]),
    "100000-rows": BadTensors(
        "100000 rows exceed max_batch_size 1000", [100_000, 8], VALUES * 100_000
    ),
    "10MB-message": BadTensors(
        "larger than max", [160_000, 8], VALUES * 160_000, code=grpc.StatusCode.RESOURCE_EXHAUSTED
    ),
}


def tensor_cases() -> list[Any]:
    """The tensor cases, sent by V2 REST."""
    tensors = {**TENSOR_CASES, **REST_ONLY_TENSOR_CASES}
    return [case.rest().param(name) for name, case in tensors.items()]


def good_grpc_request() -> InferRequest:
    tensor = InferInput(name="input-0", shape=[1, 8], datatype="FP64", data=list(VALUES))
    return InferRequest(model_name="housing", infer_inputs=[tensor])


def grpc_infer(server: ServerProcess, request: InferRequest) -> list[float]:
    """One ModelInfer call through kserve's client; the predictions it answers."""

    async def call() -> list[float]:
        client = InferenceGRPCClient(url=server.grpc_target, timeout=30)
        try:
            response = await client.infer(request)
        finally:
            await client.close()
        predictions: list[float] = response.outputs[0].as_numpy().tolist()
        return predictions

    return asyncio.run(call())


# -- the tests -------------------------------------------------------------------------


@pytest.mark.parametrize("case", json_cases() + rows_cases() + body_cases() + tensor_cases())
def test_bad_rest_request_gets_a_4xx_saying_why(
    client: httpx.Client, expected: float, case: Bad
) -> None:
    response = case.send(client)
    assert good_prediction(client, case.path) == expected, "the next good request differs"
    assert response.status_code == case.status, response.text
    body = response.json()
    assert isinstance(body.get("error"), str), f"no {{'error': message}} in {response.text}"
    assert case.says.lower() in body["error"].lower()


@pytest.mark.parametrize(
    "case",
    [case.param(name) for name, case in {**TENSOR_CASES, **GRPC_ONLY_TENSOR_CASES}.items()],
)
def test_bad_grpc_request_gets_an_error_status_saying_why(
    server: ServerProcess, expected: float, case: BadTensors
) -> None:
    with pytest.raises(grpc.RpcError) as e:
        grpc_infer(server, case.grpc_request())
    assert grpc_infer(server, good_grpc_request()) == [expected]
    assert e.value.code() == case.code, e.value.details()
    assert case.says.lower() in (e.value.details() or "").lower()


@pytest.mark.parametrize("path", [LEGACY, V1, V2])
def test_json_content_type_with_a_charset_is_accepted(client: httpx.Client, path: str) -> None:
    headers = {"Content-Type": "application/json; charset=utf-8"}
    response = client.post(path, content=GOOD_BODIES[path], headers=headers)
    assert response.status_code == 200, response.text
