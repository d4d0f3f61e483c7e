"""V2 gRPC (kserve's GRPCInferenceService) against a real server subprocess."""

from __future__ import annotations

import asyncio

import grpc
import httpx
import numpy as np
import pytest
from kserve import InferenceGRPCClient
from kserve.protocol.infer_type import InferInput, InferRequest, InferResponse

from harness.server import ServerProcess
from predictor.protocol.schema import FEATURES


def grpc_infer(server: ServerProcess, matrix: np.ndarray, datatype: str) -> InferResponse:
    async def call() -> InferResponse:
        client = InferenceGRPCClient(url=server.grpc_target, timeout=30)
        tensor = InferInput(name="input-0", shape=list(matrix.shape), datatype=datatype)
        tensor.set_data_from_numpy(matrix, binary_data=False)
        try:
            response: InferResponse = await client.infer(
                InferRequest(model_name="housing", infer_inputs=[tensor], request_id="grpc-1")
            )
            return response
        finally:
            await client.close()

    return asyncio.run(call())


def sample_matrix(sample: list[dict[str, float]], dtype: type) -> np.ndarray:
    return np.array([[item[f] for f in FEATURES] for item in sample], dtype=dtype)


@pytest.mark.parametrize(("datatype", "dtype"), [("FP64", np.float64), ("FP32", np.float32)])
def test_grpc_agrees_with_rest(
    server: ServerProcess,
    client: httpx.Client,
    sample: list[dict[str, float]],
    datatype: str,
    dtype: type,
) -> None:
    expected = client.post("/predict", json=sample).json()["prediction"]
    response = grpc_infer(server, sample_matrix(sample, dtype), datatype)
    assert response.id == "grpc-1"
    output = response.outputs[0]
    assert output.name == "predict"
    assert output.datatype == "FP64"
    assert output.as_numpy().tolist() == expected


def test_grpc_bad_input_is_invalid_argument(
    server: ServerProcess, sample: list[dict[str, float]]
) -> None:
    matrix = sample_matrix(sample, np.float64)
    matrix[2, 0] = -1.0
    with pytest.raises(grpc.RpcError) as e:
        grpc_infer(server, matrix, "FP64")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "MedInc" in (e.value.details() or "")


def grpc_requests_counted(client: httpx.Client, status: str) -> float:
    prefix = f'housing_request_seconds_count{{route="grpc",status="{status}"}}'
    lines = [line for line in client.get("/metrics").text.splitlines() if line.startswith(prefix)]
    return float(lines[0].split()[-1]) if lines else 0.0


def test_grpc_requests_are_timed_by_status(
    server: ServerProcess, client: httpx.Client, sample: list[dict[str, float]]
) -> None:
    ok, invalid = (
        grpc_requests_counted(client, "OK"),
        grpc_requests_counted(client, "INVALID_ARGUMENT"),
    )
    grpc_infer(server, sample_matrix(sample, np.float64), "FP64")
    bad = sample_matrix(sample, np.float64)
    bad[0, 6] = 91.0
    with pytest.raises(grpc.RpcError):
        grpc_infer(server, bad, "FP64")
    assert grpc_requests_counted(client, "OK") == ok + 1
    assert grpc_requests_counted(client, "INVALID_ARGUMENT") == invalid + 1
