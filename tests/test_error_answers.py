"""Every error answer is JSON with `error`; client errors log one short line, rate-limited;
every answered inference status is timed, shed 503s included."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from kserve.errors import InvalidInput
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

from harness.server import ServerProcess, start_server
from predictor.logs import ClientErrorFilter

LINES_PER_MINUTE = 10
V2_ROW = {"inputs": [{"name": "input-0", "shape": [1, 8], "datatype": "FP64", "data": [1.0] * 8}]}


@pytest.fixture(scope="module")
def quiet(model_dir: Path) -> Iterator[ServerProcess]:
    args = ["--model_dir", str(model_dir)]
    args += ["--client_error_log_lines_per_minute", str(LINES_PER_MINUTE)]
    with start_server(args) as running:
        yield running


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/no/such/path", None, 404),
        ("DELETE", "/v2/health/ready", None, 405),
        ("GET", "/predict", None, 405),
        ("POST", "/v1/models/housing:explain", {"instances": [[-1] * 8]}, 400),
        ("GET", "/v2/models/other", None, 404),
        ("POST", "/v1/models/other:predict", {"instances": [[1] * 8]}, 404),
        ("POST", "/v2/models/housing/infer", {"inputs": "no"}, 400),
        ("POST", "/v2/models/housing/versions/1/infer", V2_ROW, 404),  # not the served one
        ("POST", "/v2/repository/models/housing/unload", None, 403),
    ],
)
def test_every_error_is_json_with_error(
    client: httpx.Client, method: str, path: str, body: object, status: int
) -> None:
    response = client.request(method, path, json=body)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert isinstance(response.json()["error"], str) and response.json()["error"]


def log_lines(server: ServerProcess) -> list[dict[str, str]]:
    return [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]


def test_client_errors_log_short_lines_rate_limited(quiet: ServerProcess) -> None:
    before = len(log_lines(quiet))
    with httpx.Client(base_url=quiet.base_url, timeout=30) as client:
        for i in range(60):
            client.post("/v1/models/housing:predict", json={"instances": [["x"] * 8]})
            client.post("/v2/models/housing/infer", json={"inputs": [{"bad": i}]})
            client.get(f"/nothing/{i}")

    async def grpc_bad() -> None:
        async with grpc.aio.insecure_channel(quiet.grpc_target) as channel:
            stub = GRPCInferenceServiceStub(channel)
            request = pb.ModelInferRequest(model_name="housing", inputs=[])
            for _ in range(20):
                with pytest.raises(grpc.aio.AioRpcError):
                    await stub.ModelInfer(request, timeout=10)

    asyncio.run(grpc_bad())
    lines = log_lines(quiet)[before:]
    assert not [line for line in lines if "grpc method" in line["message"]]  # no access log
    # 200 bad requests: a burst of at most the per-minute budget (plus what refilled).
    assert 1 <= len(lines) <= LINES_PER_MINUTE + 5
    for line in lines:
        assert line["level"] == "WARNING"
        assert "exception" not in line and "Traceback" not in line["message"]
        assert len(line["message"]) < 500


def test_the_filter_shortens_client_errors_and_reports_drops() -> None:
    clock = [0.0]
    keep = ClientErrorFilter((InvalidInput,), per_minute=2, clock=lambda: clock[0])

    def record(exc: BaseException | None, level: int = logging.ERROR) -> logging.LogRecord:
        info = (type(exc), exc, None) if exc else None
        return logging.LogRecord("kserve", level, __file__, 1, "Exception:", (), info)

    first = record(InvalidInput("bad row"))
    assert keep.filter(first)
    assert first.levelname == "WARNING" and first.exc_info is None
    assert first.getMessage() == "Exception: (InvalidInput: bad row)"
    assert keep.filter(record(InvalidInput("2")))
    assert not keep.filter(record(InvalidInput("3")))  # over budget: dropped
    server_error = record(RuntimeError("boom"))
    assert keep.filter(server_error)  # server errors are never dropped nor shortened
    assert server_error.exc_info is not None and server_error.levelname == "ERROR"
    clock[0] += 30.0  # one token back
    later = record(InvalidInput("4"))
    assert keep.filter(later)
    assert "[1 similar client-error lines dropped]" in later.getMessage()


def metric(server: ServerProcess, name: str) -> float:
    for line in httpx.get(f"{server.base_url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def test_every_answered_inference_status_is_timed(quiet: ServerProcess) -> None:
    count = 'housing_request_seconds_count{route="%s",status="%s"}'
    before = {
        key: metric(quiet, count % key) for key in [("v1", "400"), ("legacy", "415"), ("v2", "413")]
    }
    with httpx.Client(base_url=quiet.base_url, timeout=30) as client:
        client.post("/v1/models/housing:predict", json={"instances": "x"})
        client.post("/predict", content=b"[]", headers={"content-type": "text/plain"})
        client.post(
            "/v2/models/housing/infer",
            content=b"{" + b" " * (3 * 1024 * 1024) + b"}",
            headers={"content-type": "application/json"},
        )
    for key, value in before.items():
        assert metric(quiet, count % key) == value + 1, key
