"""V2 REST's binary tensor extension, malformed every way a careless client manages: each
such request gets a 400 that says what is wrong, never a 5xx; good ones agree with `/predict`."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest

from harness.payloads import sample_values
from predictor.protocol.schema import FEATURES

V2 = "/v2/models/housing/infer"
ROW = sample_values()
RAW64 = np.array([ROW], dtype=np.float64).tobytes()


def tensor(size: Any = 64, datatype: str = "FP64", **extra: Any) -> dict[str, Any]:
    parameters = {"binary_data_size": size}
    return {
        "name": "input-0",
        "shape": [1, 8],
        "datatype": datatype,
        "parameters": parameters,
        **extra,
    }


def framed(request: Any, raw: bytes = RAW64, header: str | None = None) -> tuple[bytes, str]:
    """A binary-extension body (the JSON part, then `raw`) and its header value."""
    text = request if isinstance(request, bytes) else json.dumps(request).encode()
    return text + raw, str(len(text)) if header is None else header


@dataclass(frozen=True)
class Case:
    body: bytes
    header: str | None
    says: str


def case(request: Any, says: str, raw: bytes = RAW64, header: str | None = None) -> Case:
    return Case(*framed(request, raw, header), says)


def nan_row() -> bytes:
    return struct.pack("<8d", float("nan"), *ROW[1:])


CASES = {
    "header-not-a-number": case({"inputs": [tensor()]}, "non-negative integer", header="abc"),
    "header-negative": case({"inputs": [tensor()]}, "non-negative integer", header="-5"),
    "header-past-the-body": case({"inputs": [tensor()]}, "exceeds the body", header="100000"),
    "header-cuts-the-json": case({"inputs": [tensor()]}, "not a JSON request", header="10"),
    "json-part-not-json": case(b"\x00\x01binary", "not a JSON request"),
    "inputs-not-a-list": case({"inputs": {"name": "input-0"}}, "inputs"),
    "no-inputs": case({"outputs": []}, "inputs"),
    "size-not-a-number": case({"inputs": [tensor(size="64")]}, "non-negative integer"),
    "size-negative": case({"inputs": [tensor(size=-64)]}, "non-negative integer"),
    "size-a-boolean": case({"inputs": [tensor(size=True)]}, "non-negative integer"),
    "size-not-the-shape": case({"inputs": [tensor(size=32)]}, "takes 64 bytes", raw=RAW64[:32]),
    "fp32-sized-as-fp64": case({"inputs": [tensor(datatype="FP32")]}, "takes 32 bytes"),
    "bytes-after-the-inputs": case({"inputs": [tensor()]}, "add up to 64", raw=RAW64 + b"x"),
    "bytes-missing": case({"inputs": [tensor()]}, "add up to 64", raw=RAW64[:-1]),
    "data-and-size": case({"inputs": [tensor(data=ROW)]}, "both data and binary_data_size"),
    "bytes-datatype": case({"inputs": [tensor(datatype="BYTES")]}, "cannot be sent as binary"),
    "fp16-datatype": case(
        {"inputs": [tensor(size=16, datatype="FP16")]}, "FP32 or FP64", raw=RAW64[:16]
    ),
    "two-inputs": case({"inputs": [tensor(), tensor()]}, "exactly one", raw=RAW64 * 2),
    "nan-value": case({"inputs": [tensor()]}, "MedInc", raw=nan_row()),
    "binary-output-not-bool": case(
        {"inputs": [tensor()], "parameters": {"binary_data_output": "yes"}}, "must be a boolean"
    ),
    "output-binary-not-bool": case(
        {"inputs": [tensor()], "outputs": [{"name": "predict", "parameters": {"binary_data": 1}}]},
        "must be a boolean",
    ),
    "unknown-output": case({"inputs": [tensor()], "outputs": [{"name": "nope"}]}, "'nope'"),
    "output-twice": case(
        {"inputs": [tensor()], "outputs": [{"name": "predict"}, {"name": "predict"}]}, "twice"
    ),
    # A size in a plain JSON body: the extension's header is missing.
    "size-without-header": Case(
        json.dumps({"inputs": [tensor()]}).encode(), None, "Inference-Header-Content-Length"
    ),
}


def post(client: httpx.Client, body: bytes, header: str | None, **headers: str) -> httpx.Response:
    if header is not None:
        headers["Inference-Header-Content-Length"] = header
    return client.post(V2, content=body, headers=headers)


@pytest.mark.parametrize("name", list(CASES))
def test_malformed_binary_request_gets_400_saying_why(client: httpx.Client, name: str) -> None:
    bad = CASES[name]
    response = post(client, bad.body, bad.header)
    assert response.status_code == 400, response.text
    assert bad.says.lower() in response.json()["error"].lower()


def legacy_prediction(client: httpx.Client) -> float:
    prediction: float = client.post(
        "/predict", json=[dict(zip(FEATURES, ROW, strict=True))]
    ).json()["prediction"][0]
    return prediction


def binary_output(response: httpx.Response) -> tuple[dict[str, Any], bytes]:
    json_length = int(response.headers["Inference-Header-Content-Length"])
    return json.loads(response.content[:json_length]), response.content[json_length:]


@pytest.mark.parametrize(("datatype", "dtype"), [("FP64", np.float64), ("FP32", np.float32)])
@pytest.mark.parametrize("content_type", [None, "application/octet-stream"])
def test_binary_in_and_out_agree_with_legacy(
    client: httpx.Client, datatype: str, dtype: Any, content_type: str | None
) -> None:
    raw = np.array([ROW], dtype=dtype).tobytes()
    request = {"inputs": [tensor(len(raw), datatype)], "parameters": {"binary_data_output": True}}
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = post(client, *framed(request, raw), **headers)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/octet-stream"
    header, tail = binary_output(response)
    [output] = header["outputs"]
    assert output["parameters"] == {"binary_data_size": 8}
    assert "data" not in output
    assert np.frombuffer(tail, dtype=np.float64).tolist() == [legacy_prediction(client)]


def test_binary_data_on_a_requested_output_overrides_the_request(client: httpx.Client) -> None:
    expected = legacy_prediction(client)
    as_json = {"name": "predict", "parameters": {"binary_data": False}}
    request = {
        "inputs": [tensor()],
        "parameters": {"binary_data_output": True},
        "outputs": [as_json],
    }
    response = post(client, *framed(request))
    assert response.status_code == 200, response.text
    assert "Inference-Header-Content-Length" not in response.headers
    assert response.json()["outputs"][0]["data"] == [expected]
    # The request-wide default holds for a named output that says nothing.
    request["outputs"] = [{"name": "predict"}]
    header, tail = binary_output(post(client, *framed(request)))
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 8}
    assert np.frombuffer(tail, dtype=np.float64).tolist() == [expected]
