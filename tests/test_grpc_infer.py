"""gRPC ModelInfer (predictor.grpc.infer) against V2 REST, for every datatype and form.

Each tensor is sent over gRPC typed (`contents`) and raw (`raw_input_contents`), as one
`[N, 8]` tensor and as one tensor per feature, and the same values over V2 REST (JSON, and
the binary extension): the predictions agree to the last bit.
"""

from __future__ import annotations

import re
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

from harness.server import ServerProcess
from predictor.protocol.schema import FEATURES
from predictor.protocol.v2 import DATATYPES

V2 = "/v2/models/housing/infer"
# Rows every integer type holds (INT8 included); the unsigned ones without the longitude's sign.
SIGNED = [[8, 41, 7, 1, 100, 3, 38, -122], [3, 20, 5, 1, 90, 3, 34, -118]]
UNSIGNED = [[8, 41, 7, 1, 100, 3, 38, 0], [3, 20, 5, 1, 90, 3, 34, 0]]
FLOATS = [
    [8.3252, 41.0, 6.98, 1.02, 322.0, 2.55, 37.88, -122.23],
    [2.5, 20.0, 4.5, 1.1, 900.0, 3.1, 34.05, -118.25],
]
# The protocol's table of the `contents` field each datatype's values travel in.
CONTENTS = {
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    **{f"INT{bits}": "int_contents" for bits in (8, 16, 32)},
    "INT64": "int64_contents",
    **{f"UINT{bits}": "uint_contents" for bits in (8, 16, 32)},
    "UINT64": "uint64_contents",
}


def rows_for(datatype: str) -> np.ndarray:
    rows = FLOATS if datatype.startswith("FP") else UNSIGNED if datatype[0] == "U" else SIGNED
    return np.array(rows, dtype=DATATYPES[datatype])


def tensors(matrix: np.ndarray, datatype: str, columns: bool) -> list[tuple[str, np.ndarray]]:
    if columns:
        return [(name, matrix[:, i]) for i, name in enumerate(FEATURES)]
    return [("input-0", matrix)]


def grpc_request(
    matrix: np.ndarray, datatype: str, columns: bool, raw: bool, **fields: Any
) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="housing", **fields)
    for name, values in tensors(matrix, datatype, columns):
        tensor = request.inputs.add(name=name, datatype=datatype, shape=values.shape)
        if raw:
            request.raw_input_contents.append(values.tobytes())
        else:
            getattr(tensor.contents, CONTENTS[datatype]).extend(values.ravel().tolist())
    return request


def model_infer(server: ServerProcess, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
    with grpc.insecure_channel(server.grpc_target) as channel:
        response: pb.ModelInferResponse = GRPCInferenceServiceStub(channel).ModelInfer(
            request, timeout=30
        )
    return response


def rest_predictions(
    client: httpx.Client, matrix: np.ndarray, datatype: str, columns: bool, binary: bool
) -> list[float]:
    inputs = []
    tail = b""
    for name, values in tensors(matrix, datatype, columns):
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(values.shape)}
        if binary:
            tensor["parameters"] = {"binary_data_size": values.nbytes}
            tail += values.tobytes()
        else:
            tensor["data"] = values.ravel().tolist()
        inputs.append(tensor)
    body = httpx.Request("POST", "/", json={"inputs": inputs}).content
    headers = {"Content-Type": "application/json"}
    if binary:
        headers = {"Inference-Header-Content-Length": str(len(body))}
    response = client.post(V2, content=body + tail, headers=headers)
    assert response.status_code == 200, response.text
    predictions: list[float] = response.json()["outputs"][0]["data"]
    return predictions


def answered(response: pb.ModelInferResponse) -> list[float]:
    [output] = response.outputs
    assert (output.name, output.datatype) == ("predict", "FP64")
    if response.raw_output_contents:
        [raw] = response.raw_output_contents
        assert output.parameters["binary_data_size"].int64_param == len(raw)
        values: list[float] = np.frombuffer(raw, dtype="<f8").tolist()
        return values
    return list(output.contents.fp64_contents)


@pytest.mark.parametrize("columns", [False, True], ids=["matrix", "per-feature"])
@pytest.mark.parametrize("raw", [False, True], ids=["typed", "raw"])
@pytest.mark.parametrize("datatype", list(DATATYPES))
def test_grpc_answers_what_v2_rest_answers(
    server: ServerProcess, client: httpx.Client, datatype: str, raw: bool, columns: bool
) -> None:
    matrix = rows_for(datatype)
    expected = rest_predictions(client, matrix, datatype, columns, binary=raw)
    response = model_infer(server, grpc_request(matrix, datatype, columns, raw, id="same"))
    assert response.id == "same"
    assert bool(response.raw_output_contents) == raw
    assert answered(response) == expected
    assert [list(o.shape) for o in response.outputs] == [[len(matrix)]]


def test_a_request_without_an_id_gets_a_fresh_uuid_shaped_one(server: ServerProcess) -> None:
    request = grpc_request(rows_for("FP64"), "FP64", columns=False, raw=False)
    ids = {model_infer(server, request).id for _ in range(3)}
    assert len(ids) == 3
    uuid = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
    assert all(uuid.match(i) for i in ids), ids


@pytest.mark.parametrize(
    ("other", "says"),
    [
        ("int64_contents", "fp64_contents only, got contents.int64_contents, contents.fp64"),
        (None, "fp32_contents only, got contents.fp64_contents"),
    ],
    ids=["two-contents", "another-datatypes-contents"],
)
def test_values_in_a_contents_field_of_another_datatype_are_refused(
    server: ServerProcess, other: str | None, says: str
) -> None:
    """kserve read its datatype's field alone and answered, whatever the others held."""
    matrix = rows_for("FP64")
    request = grpc_request(matrix, "FP64", columns=False, raw=False)
    if other is None:
        request.inputs[0].datatype = "FP32"
    else:
        getattr(request.inputs[0].contents, other).extend([1] * matrix.size)
    with pytest.raises(grpc.RpcError) as e:
        model_infer(server, request)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert says in (e.value.details() or "")  # type: ignore[attr-defined]
