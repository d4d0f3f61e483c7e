"""gRPC hardening against a real server: malformed messages, readiness, reflection."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

from harness.server import ServerProcess, start_server

SERVICE = "inference.GRPCInferenceService"
LOG_LINES_PER_MINUTE = 3


@pytest.fixture(scope="module")
def repository_server(model_dir: Path) -> Iterator[ServerProcess]:
    args = [
        "--model_dir",
        str(model_dir),
        "--enable_model_repository",
        "true",
        "--client_error_log_lines_per_minute",
        str(LOG_LINES_PER_MINUTE),
    ]
    with start_server(args) as server:
        yield server


def raw_call(target: str, method: str, payload: bytes) -> grpc.RpcError:
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(f"/{SERVICE}/{method}")  # bytes in, bytes out
        with pytest.raises(grpc.RpcError) as raised:
            call(payload, timeout=30)
    error = raised.value
    assert isinstance(error, grpc.RpcError)
    return error


def test_malformed_protobuf_is_invalid_argument_with_one_short_warning(
    repository_server: ServerProcess,
) -> None:
    before = len(repository_server.log())
    for _ in range(2 * LOG_LINES_PER_MINUTE):
        error = raw_call(repository_server.grpc_target, "ModelInfer", b"\xff\xff\xff\xff")
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        assert error.details() == "malformed ModelInferRequest"  # type: ignore[attr-defined]
    time.sleep(0.3)
    written = repository_server.log()[before:]
    assert "Traceback" not in written and '"ERROR"' not in written, written
    warnings = [line for line in written.splitlines() if "malformed ModelInferRequest" in line]
    assert 1 <= len(warnings) <= LOG_LINES_PER_MINUTE, written  # rate-limited


def rest_ready(server: ServerProcess) -> bool:
    return httpx.get(f"{server.base_url}/v2/health/ready", timeout=10).status_code == 200


def grpc_ready(server: ServerProcess) -> tuple[bool, bool]:
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        server_ready = stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready
        try:
            model_ready = stub.ModelReady(pb.ModelReadyRequest(name="housing"), timeout=10).ready
        except grpc.RpcError:
            model_ready = False
    return server_ready, model_ready


def test_grpc_readiness_agrees_with_rest_after_an_unload(
    repository_server: ServerProcess,
) -> None:
    base = repository_server.base_url
    assert rest_ready(repository_server) and grpc_ready(repository_server) == (True, True)
    try:
        unloaded = httpx.post(f"{base}/v2/repository/models/housing/unload", timeout=30)
        assert unloaded.status_code == 200
        assert not rest_ready(repository_server)
        assert grpc_ready(repository_server) == (False, False)
    finally:
        loaded = httpx.post(f"{base}/v2/repository/models/housing/load", timeout=30)
        assert loaded.status_code == 200
    assert rest_ready(repository_server) and grpc_ready(repository_server) == (True, True)


def test_reflection_lists_and_describes_the_service(repository_server: ServerProcess) -> None:
    with grpc.insecure_channel(repository_server.grpc_target) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        assert SERVICE in database.get_services()
        infer = database.FindFileContainingSymbol(SERVICE)
        assert any(s.name == "GRPCInferenceService" for s in infer.service)


def test_reflection_can_be_turned_off(model_dir: Path) -> None:
    args = ["--model_dir", str(model_dir), "--enable_grpc_reflection", "false"]
    with start_server(args) as server, grpc.insecure_channel(server.grpc_target) as channel:
        with pytest.raises(grpc.RpcError) as raised:
            ProtoReflectionDescriptorDatabase(channel).get_services()
        assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED  # type: ignore[attr-defined]
