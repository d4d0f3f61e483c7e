"""The Open Inference Protocol and KServe's V1, as other people's clients and servers read
them, against a real server process: every accepted form gets the legacy route's
predictions, every versioned route of an unknown model a 404, every wrong method a 405
with `Allow`; HEAD, trailing slashes, HTTP/1.0 binary answers and WebSocket upgrades are
answered as HTTP says.

MLServer's PandasCodec requests are written by hand from MLServer's documentation (one input
per DataFrame column, named by it, shape `[N, 1]`, request `parameters.content_type: "pd"`):
`mlserver` does not install beside kserve in one environment.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.http as triton_http
from kserve.protocol.infer_type import InferInput, InferRequest

from harness.server import ServerProcess
from predictor.protocol.schema import FEATURES
from tests.test_bad_input import grpc_infer

V1 = "/v1/models/housing:predict"
V2 = "/v2/models/housing/infer"
# Whole numbers every integer datatype holds (INT8 tops out at 127; unsigned: no sign).
INT_ROWS = [
    {"MedInc": 8, "HouseAge": 42, "AveRooms": 6, "AveBedrms": 1, "Population": 100,
     "AveOccup": 3, "Latitude": 37, "Longitude": 122},
    {"MedInc": 3, "HouseAge": 15, "AveRooms": 5, "AveBedrms": 2, "Population": 120,
     "AveOccup": 2, "Latitude": 34, "Longitude": 118},
]  # fmt: skip
INT_TYPES = ["INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"]


def legacy(client: httpx.Client, rows: list[dict[str, Any]]) -> list[float]:
    response = client.post("/predict", json=rows)
    assert response.status_code == 200, response.text
    predictions: list[float] = response.json()["prediction"]
    return predictions


def matrix(rows: list[dict[str, Any]]) -> list[list[Any]]:
    return [[row[name] for name in FEATURES] for row in rows]


def v2_outputs(response: httpx.Response) -> list[float]:
    assert response.status_code == 200, response.text
    data: list[float] = response.json()["outputs"][0]["data"]
    return data


def pandas_codec_body(
    rows: list[dict[str, Any]], datatype: str, column_shape: str
) -> dict[str, Any]:
    """A DataFrame of `rows` as MLServer's PandasCodec encodes it: one input per column."""
    n = len(rows)
    shape = [n, 1] if column_shape == "[N, 1]" else [n]
    inputs = [
        {
            "name": name,
            "shape": shape,
            "datatype": datatype,
            "data": [row[name] for row in rows],
            "parameters": {"content_type": "np"},
        }
        for name in FEATURES
    ]
    return {"parameters": {"content_type": "pd"}, "inputs": inputs}


# -- forms other clients send ---------------------------------------------------------------


@pytest.mark.parametrize("datatype", INT_TYPES)
def test_integer_tensors_are_read_as_their_numbers(client: httpx.Client, datatype: str) -> None:
    expected = legacy(client, INT_ROWS)
    tensor = {"name": "input-0", "shape": [2, 8], "datatype": datatype, "data": matrix(INT_ROWS)}
    assert v2_outputs(client.post(V2, json={"inputs": [tensor]})) == expected


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.uint64])
def test_tritonclient_sends_numpy_integer_arrays_in_binary(
    client: httpx.Client, server: ServerProcess, dtype: Any
) -> None:
    expected = legacy(client, INT_ROWS)
    array = np.array(matrix(INT_ROWS), dtype=dtype)
    datatype = {np.int32: "INT32", np.int64: "INT64", np.uint8: "UINT8", np.uint64: "UINT64"}
    tensor = triton_http.InferInput("input-0", list(array.shape), datatype[dtype])
    tensor.set_data_from_numpy(array, binary_data=True)
    triton = triton_http.InferenceServerClient(server.base_url.removeprefix("http://"))
    result = triton.infer("housing", [tensor])
    assert result.as_numpy("predict").tolist() == expected


def test_an_integer_out_of_its_datatype_is_refused(client: httpx.Client) -> None:
    rows = matrix(INT_ROWS)
    rows[0][4] = 300  # past INT8
    tensor = {"name": "input-0", "shape": [2, 8], "datatype": "INT8", "data": rows}
    response = client.post(V2, json={"inputs": [tensor]})
    assert response.status_code == 400
    assert "INT8" in response.json()["error"]


@pytest.mark.parametrize("column_shape", ["[N]", "[N, 1]"])
@pytest.mark.parametrize("datatype", ["FP64", "FP32", "INT64"])
def test_pandas_codec_requests_get_the_same_predictions(
    client: httpx.Client, column_shape: str, datatype: str
) -> None:
    rows = INT_ROWS if datatype == "INT64" else json.loads(_SAMPLE)
    expected = legacy(client, rows)
    body = pandas_codec_body(rows, datatype, column_shape)
    body["inputs"].reverse()  # by name, in any order
    assert v2_outputs(client.post(V2, json=body)) == expected


def test_pandas_codec_request_missing_a_feature_says_which(client: httpx.Client) -> None:
    body = pandas_codec_body(INT_ROWS, "INT64", "[N]")
    body["inputs"] = [t for t in body["inputs"] if t["name"] != "AveOccup"]
    response = client.post(V2, json=body)
    assert response.status_code == 400
    assert "missing AveOccup" in response.json()["error"]


def test_grpc_takes_pandas_codec_and_integer_tensors(
    client: httpx.Client, server: ServerProcess
) -> None:
    expected = legacy(client, INT_ROWS)
    columns = [
        InferInput(name=name, shape=[2], datatype="INT64", data=[row[name] for row in INT_ROWS])
        for name in FEATURES
    ]
    assert grpc_infer(server, InferRequest(model_name="housing", infer_inputs=columns)) == expected
    flat = [v for row in matrix(INT_ROWS) for v in row]
    for datatype in ("INT32", "INT64", "UINT32", "UINT64"):
        tensor = InferInput(name="input-0", shape=[2, 8], datatype=datatype, data=flat)
        request = InferRequest(model_name="housing", infer_inputs=[tensor])
        assert grpc_infer(server, request) == expected, datatype


@pytest.mark.parametrize(
    "instances",
    [
        pytest.param(lambda rows: [rows], id="records-in-one-instance"),
        pytest.param(lambda rows: [[row] for row in rows], id="one-record-per-instance"),
        pytest.param(
            lambda rows: [{name: [row[name] for row in rows] for name in FEATURES}],
            id="columns-in-one-instance",
        ),
    ],
)
def test_v1_takes_the_dataframe_forms_sklearnserver_reads(
    client: httpx.Client, sample: list[dict[str, float]], instances: Any
) -> None:
    expected = legacy(client, sample)
    response = client.post(V1, json={"instances": instances(sample)})
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": expected}


# -- answers --------------------------------------------------------------------------------


def test_v2_answers_carry_no_null_parameters(
    client: httpx.Client, sample: list[dict[str, float]]
) -> None:
    tensor = {"name": "input-0", "shape": [len(sample), 8], "datatype": "FP64"}
    answer = client.post(V2, json={"inputs": [{**tensor, "data": matrix(sample)}]}).json()
    assert "parameters" not in answer
    assert "parameters" not in answer["outputs"][0]


def raw_exchange(server: ServerProcess, request: bytes) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """Send raw bytes, read until the server closes: status line, headers, body."""
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines)}
    return status, headers, body


def test_a_binary_answer_to_http_1_0_has_a_content_length(server: ServerProcess) -> None:
    raw = np.array(matrix(INT_ROWS), dtype=np.float64).tobytes()
    tensor = {"name": "input-0", "shape": [2, 8], "datatype": "FP64"}
    request = {
        "inputs": [{**tensor, "parameters": {"binary_data_size": len(raw)}}],
        "parameters": {"binary_data_output": True},
    }
    head = json.dumps(request).encode()
    message = (
        f"POST {V2} HTTP/1.0\r\nHost: x\r\nContent-Length: {len(head) + len(raw)}\r\n"
        f"Inference-Header-Content-Length: {len(head)}\r\n\r\n"
    ).encode()
    status, headers, body = raw_exchange(server, message + head + raw)
    assert status.split()[1] == b"200", body
    assert b"transfer-encoding" not in headers
    assert int(headers[b"content-length"]) == len(body)
    json_part = int(headers[b"inference-header-content-length"])
    answer = json.loads(body[:json_part])
    assert answer["outputs"][0]["parameters"] == {"binary_data_size": 16}
    assert len(body) - json_part == 16


def test_server_metadata_lists_the_extensions_served(client: httpx.Client) -> None:
    metadata = client.get("/v2").json()
    assert metadata["extensions"] == ["binary_tensor_data"]  # the repository API is off


# -- routing ---------------------------------------------------------------------------------

UNKNOWN_MODEL = [
    ("GET", "/v2/models/nope"),
    ("GET", "/v2/models/nope/ready"),
    ("POST", "/v2/models/nope/infer"),
    ("GET", "/v2/models/nope/versions/1"),
    ("GET", "/v2/models/nope/versions/1/ready"),
    ("POST", "/v2/models/nope/versions/1/infer"),
    ("GET", "/v1/models/nope"),
    ("POST", "/v1/models/nope:predict"),
]


@pytest.mark.parametrize(("method", "path"), UNKNOWN_MODEL)
def test_an_unknown_model_is_a_404_on_every_route(
    client: httpx.Client, method: str, path: str
) -> None:
    body = {"inputs": [{"name": "input-0", "shape": [1, 8], "datatype": "FP64", "data": [1] * 8}]}
    response = client.request(method, path, json=body if method == "POST" else None)
    assert response.status_code == 404, response.text
    assert "nope" in response.json()["error"]


POST_ROUTES = [
    "/predict",
    V1,
    V2,
    "/v2/models/housing/versions/{version}/infer",
    "/v2/repository/models/housing/load",
    "/v2/repository/models/housing/unload",
]
GET_ROUTES = [
    "/",
    "/health",
    "/metrics",
    "/docs",
    "/openapi/housing.json",
    "/v1/models",
    "/v1/models/housing",
    "/v2",
    "/v2/health/live",
    "/v2/health/ready",
    "/v2/models/housing",
    "/v2/models/housing/ready",
    "/v2/models/housing/versions/{version}",
    "/v2/models/housing/versions/{version}/ready",
]


@pytest.fixture()
def version(client: httpx.Client) -> str:
    versions: list[str] = client.get("/v2/models/housing").json()["versions"]
    return versions[0]


@pytest.mark.parametrize(
    ("path", "method", "allowed"),
    [(p, "GET", "POST") for p in POST_ROUTES] + [(p, "DELETE", "GET") for p in GET_ROUTES],
)
def test_a_wrong_method_is_a_405_saying_what_is_allowed(
    client: httpx.Client, version: str, path: str, method: str, allowed: str
) -> None:
    response = client.request(method, path.format(version=version))
    assert response.status_code == 405, response.text
    assert allowed in response.headers["allow"]
    assert isinstance(response.json()["error"], str)


@pytest.mark.parametrize("path", GET_ROUTES)
def test_head_answers_like_get_without_a_body(
    client: httpx.Client, version: str, path: str
) -> None:
    path = path.format(version=version)
    got, head = client.get(path), client.head(path)
    assert head.status_code == got.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]


@pytest.mark.parametrize("path", ["/v2/health/ready/", "/predict/", "/v2/models/housing/infer/"])
def test_a_trailing_slash_is_never_a_redirect(client: httpx.Client, path: str) -> None:
    response = client.request("GET" if "health" in path else "POST", path, headers={"Host": "evil"})
    assert response.status_code == 404
    assert "location" not in response.headers


def test_a_websocket_upgrade_gets_json_with_an_error(server: ServerProcess) -> None:
    handshake = (
        b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    status, headers, body = raw_exchange(server, handshake)
    assert status.split()[1].startswith(b"4"), status
    assert headers[b"content-type"] == b"application/json"
    assert isinstance(json.loads(body)["error"], str)


def test_grpc_names_an_unknown_model_not_found(server: ServerProcess) -> None:
    tensor = InferInput(name="input-0", shape=[1, 8], datatype="FP64", data=[1.0] * 8)
    request = InferRequest(model_name="nope", infer_inputs=[tensor], model_version="1")
    with pytest.raises(grpc.RpcError) as e:
        grpc_infer(server, request)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


_SAMPLE = json.dumps(
    [
        {"MedInc": 8.3252, "HouseAge": 42.0, "AveRooms": 6.98, "AveBedrms": 1.02,
         "Population": 322.0, "AveOccup": 2.55, "Latitude": 37.88, "Longitude": -122.23},
        {"MedInc": 2.5, "HouseAge": 20.0, "AveRooms": 4.5, "AveBedrms": 1.1,
         "Population": 900.0, "AveOccup": 3.1, "Latitude": 34.05, "Longitude": -118.25},
    ]
)  # fmt: skip
