"""The management surface: the model repository API is off unless asked for, and health
paths tell Kubernetes the truth once the model is gone."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

from harness.server import ServerProcess, start_server

UNLOADED_LIVENESS = 1.5
REPOSITORY = "/v2/repository/models/housing"


def grpc_call(server: ServerProcess, method: str, request: object) -> object:
    async def call() -> object:
        async with grpc.aio.insecure_channel(server.grpc_target) as channel:
            return await getattr(GRPCInferenceServiceStub(channel), method)(request, timeout=10)

    return asyncio.run(call())


def test_repository_api_is_refused_by_default_and_the_model_stays(
    server: ServerProcess, client: httpx.Client, sample: list[dict[str, float]]
) -> None:
    for action in ("unload", "load"):
        response = client.post(f"{REPOSITORY}/{action}")
        assert response.status_code == 403
        assert "--enable_model_repository" in response.json()["error"]
    for method, request in [
        ("RepositoryModelUnload", pb.RepositoryModelUnloadRequest(model_name="housing")),
        ("RepositoryModelLoad", pb.RepositoryModelLoadRequest(model_name="housing")),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            grpc_call(server, method, request)
        assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
        assert "--enable_model_repository" in (refused.value.details() or "")
    assert client.get("/v1/models/housing").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    assert client.post("/predict", json=sample).status_code == 200


@pytest.fixture()
def managed(model_dir: Path) -> Iterator[ServerProcess]:
    args = ["--model_dir", str(model_dir), "--enable_model_repository", "true"]
    args += ["--unloaded_liveness_seconds", str(UNLOADED_LIVENESS)]
    with start_server(args) as running:
        yield running


def test_when_enabled_unload_fails_readiness_then_liveness_and_load_restores(
    managed: ServerProcess, sample: list[dict[str, float]]
) -> None:
    with httpx.Client(base_url=managed.base_url, timeout=30) as client:
        assert client.post(f"{REPOSITORY}/unload").status_code == 200
        ready = client.get("/v2/health/ready")
        assert ready.status_code == 503 and "not loaded" in ready.json()["error"]
        assert client.get("/v1/models/housing").status_code == 404
        assert client.post("/predict", json=sample).status_code == 503
        # Liveness holds for the bound (time for a deliberate reload), then fails.
        assert client.get("/v2/health/live").status_code == 200
        deadline = time.monotonic() + UNLOADED_LIVENESS + 30
        while client.get("/v2/health/live").status_code == 200:
            assert time.monotonic() < deadline, "liveness never failed"
            time.sleep(0.2)
        live = client.get("/v2/health/live")
        assert live.status_code == 503 and "not loaded" in live.json()["error"]
        assert client.get("/").status_code == 503
        # Loading reads the model directory again and everything comes back.
        loaded = client.post(f"{REPOSITORY}/load")
        assert loaded.status_code == 200 and loaded.json() == {"name": "housing", "load": True}
        for path in ("/v2/health/live", "/v2/health/ready", "/v1/models/housing", "/"):
            assert client.get(path).status_code == 200
        assert client.post("/predict", json=sample).status_code == 200
        other = client.post("/v2/repository/models/other/load")
        assert other.status_code == 404 and "other" in other.json()["error"]
