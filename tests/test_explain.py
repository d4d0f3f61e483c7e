"""Explanations through every door of a real server, against shap's own TreeExplainer.

One server (with a private redis-server, so both cache tiers) answers the three doors
(V1 `:explain`, V2 `treeshap_output` over REST JSON, REST binary and gRPC, legacy
`POST /explain`); every answer is compared with `shap.TreeExplainer` run here on the same
estimator, and with the server's own predictions.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import grpc
import httpx
import numpy as np
import pytest
from kserve import InferenceGRPCClient
from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput

from harness.redis_server import RedisServer
from harness.server import REPO, ServerProcess, start_server
from predictor.cache.keys import canonical_rows, row_digests
from predictor.model.artifact import load_artifact
from predictor.protocol.schema import FEATURES
from predictor.train import load_statlib

# Close to the float64 rounding of a sum of 400 trees' values: shap computes the same
# numbers here as in the server, so they agree far more closely than this.
TOLERANCE: Final = 1e-9
V2_PATH: Final = "/v2/models/housing/infer"
V1_PATH: Final = "/v1/models/housing:explain"
N_ROWS: Final = 40


@pytest.fixture(scope="module")
def rows(data_path: Path) -> np.ndarray:
    """Real block groups, seeded: rows the model was trained and tested on."""
    features = load_statlib(data_path).features
    pick = np.random.default_rng(19).choice(len(features), size=N_ROWS, replace=False)
    return np.ascontiguousarray(features[pick])


@pytest.fixture(scope="module")
def shap_reference(model_dir: Path, rows: np.ndarray) -> tuple[np.ndarray, float]:
    """shap's own answer, computed in this process: (contributions, base value)."""
    import shap

    explainer = shap.TreeExplainer(load_artifact(model_dir).estimator)
    values = np.asarray(explainer.shap_values(rows))
    return values, float(np.ravel(explainer.expected_value)[0])


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("explain-redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def explaining(model_dir: Path, redis: RedisServer) -> Iterator[ServerProcess]:
    args = ["--model_dir", str(model_dir), "--redis_url", redis.url, "--max_batch_size", "100"]
    with start_server(args) as running:
        yield running


@pytest.fixture(scope="module")
def svr_server(
    tmp_path_factory: pytest.TempPathFactory, data_path: Path
) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("svr")
    subprocess.run(
        [sys.executable, "-m", "predictor.train", "--model_dir", str(directory),
         "--data", str(data_path), "--estimator", "svr", "--max_rows", "2000"],
        check=True, cwd=REPO,
    )  # fmt: skip
    with start_server(["--model_dir", str(directory)]) as running:
        yield running


def objects(rows: np.ndarray) -> list[dict[str, float]]:
    return [dict(zip(FEATURES, row, strict=True)) for row in rows.tolist()]


def v2_request(rows: np.ndarray, outputs: list[str] | None = None) -> dict[str, Any]:
    tensor = {"name": "input-0", "datatype": "FP64", "shape": list(rows.shape)}
    body: dict[str, Any] = {"inputs": [{**tensor, "data": rows.ravel().tolist()}]}
    if outputs is not None:
        body["outputs"] = [{"name": name} for name in outputs]
    return body


def assert_matches(
    contributions: np.ndarray, base: np.ndarray | float, reference: tuple[np.ndarray, float]
) -> None:
    values, expected_base = reference
    np.testing.assert_allclose(contributions, values, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(base, expected_base, rtol=0, atol=TOLERANCE)


def predictions(server: ServerProcess, rows: np.ndarray) -> np.ndarray:
    answer = httpx.post(f"{server.base_url}/predict", json=objects(rows), timeout=30)
    return np.array(answer.json()["prediction"])


def test_v1_explain_objects_and_arrays(
    explaining: ServerProcess, rows: np.ndarray, shap_reference: tuple[np.ndarray, float]
) -> None:
    expected = predictions(explaining, rows)
    for body in ({"instances": objects(rows)}, {"inputs": rows.tolist()}):
        response = httpx.post(f"{explaining.base_url}{V1_PATH}", json=body, timeout=60)
        assert response.status_code == 200, response.text
        explanations = response.json()["explanations"]
        contributions = np.array([[e["contributions"][f] for f in FEATURES] for e in explanations])
        assert [list(e["contributions"]) for e in explanations] == [list(FEATURES)] * N_ROWS
        assert_matches(
            contributions, np.array([e["base_value"] for e in explanations]), shap_reference
        )
        assert [e["prediction"] for e in explanations] == expected.tolist()
        # Additive: the base value and the contributions sum to the prediction.
        sums = contributions.sum(axis=1) + shap_reference[1]
        np.testing.assert_allclose(sums, expected, rtol=0, atol=TOLERANCE)


def test_v2_rest_json_and_binary(
    explaining: ServerProcess, rows: np.ndarray, shap_reference: tuple[np.ndarray, float]
) -> None:
    url = f"{explaining.base_url}{V2_PATH}"
    both = httpx.post(url, json=v2_request(rows, ["predict", "treeshap_output"]), timeout=60)
    assert both.status_code == 200, both.text
    predict, table = both.json()["outputs"]
    assert (
        predict["name"] == "predict" and predict["data"] == predictions(explaining, rows).tolist()
    )
    assert (table["name"], table["datatype"], table["shape"]) == (
        "treeshap_output",
        "FP64",
        [N_ROWS, 9],
    )
    matrix = np.array(table["data"]).reshape(N_ROWS, 9)
    assert_matches(matrix[:, :8], matrix[:, 8], shap_reference)
    # Only what is asked for; in binary when asked.
    alone = httpx.post(url, json=v2_request(rows, ["treeshap_output"]), timeout=60).json()
    assert [o["name"] for o in alone["outputs"]] == ["treeshap_output"]
    binary_request = v2_request(rows)
    binary_request["outputs"] = [{"name": "treeshap_output", "parameters": {"binary_data": True}}]
    binary = httpx.post(url, json=binary_request, timeout=60)
    json_length = int(binary.headers["Inference-Header-Content-Length"])
    [output] = json.loads(binary.content[:json_length])["outputs"]
    assert output["parameters"] == {"binary_data_size": N_ROWS * 9 * 8}
    raw = np.frombuffer(binary.content[json_length:], dtype=np.float64).reshape(N_ROWS, 9)
    assert_matches(raw[:, :8], raw[:, 8], shap_reference)
    # Without outputs, predictions only, as before.
    plain = httpx.post(url, json=v2_request(rows), timeout=60).json()
    assert [o["name"] for o in plain["outputs"]] == ["predict"]


def grpc_explain(server: ServerProcess, rows: np.ndarray, raw: bool) -> np.ndarray:
    async def call() -> np.ndarray:
        client = InferenceGRPCClient(url=server.grpc_target, timeout=60)
        tensor = InferInput(name="input-0", shape=list(rows.shape), datatype="FP64")
        tensor.set_data_from_numpy(rows, binary_data=raw)
        request = InferRequest(
            model_name="housing",
            infer_inputs=[tensor],
            request_outputs=[RequestedOutput(name="treeshap_output")],
        )
        try:
            response = await client.infer(request)
        finally:
            await client.close()
        [output] = response.outputs
        assert (output.name, output.datatype, output.shape) == (
            "treeshap_output",
            "FP64",
            [len(rows), 9],
        )
        table: np.ndarray = output.as_numpy()
        return table.reshape(len(rows), 9)

    return asyncio.run(call())


@pytest.mark.parametrize("raw", [False, True])
def test_v2_grpc(
    explaining: ServerProcess,
    rows: np.ndarray,
    shap_reference: tuple[np.ndarray, float],
    raw: bool,
) -> None:
    table = grpc_explain(explaining, rows, raw)
    assert_matches(table[:, :8], table[:, 8], shap_reference)


def test_legacy_explain(
    explaining: ServerProcess, rows: np.ndarray, shap_reference: tuple[np.ndarray, float]
) -> None:
    items = objects(rows)
    predicted = httpx.post(f"{explaining.base_url}/predict", json=items, timeout=30)
    explained = httpx.post(f"{explaining.base_url}/explain", json=items, timeout=60)
    assert explained.status_code == 200, explained.text
    answer = explained.json()
    # /predict's answer, plus the base value and one contributions object per row.
    assert {k: answer[k] for k in ("query_key", "inputs", "prediction")} == predicted.json()
    contributions = np.array([[c[f] for f in FEATURES] for c in answer["contributions"]])
    assert_matches(contributions, answer["base_value"], shap_reference)


def test_explanations_are_cached_in_both_tiers(
    explaining: ServerProcess, redis: RedisServer, rows: np.ndarray, model_dir: Path,
    shap_reference: tuple[np.ndarray, float],
) -> None:  # fmt: skip
    httpx.post(f"{explaining.base_url}{V1_PATH}", json={"instances": rows.tolist()}, timeout=60)
    version = json.loads((model_dir / "metadata.json").read_text())["model_version"][:16]
    digests = row_digests(canonical_rows(rows))
    with redis.client() as client:
        stored = client.mget([f"housing:shap:{version}:{d}:{f}" for d in digests for f in FEATURES])
    assert None not in stored
    cached = np.array([float(v) for v in stored]).reshape(N_ROWS, 8)
    assert_matches(cached, shap_reference[1], shap_reference)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (V1_PATH, {"instances": [{"MedInc": -1}]}),
        (V1_PATH, {"rows": []}),
        ("/explain", [{"MedInc": 1.0}]),
        (V2_PATH, {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 8],
                               "data": [-1.0] * 8}], "outputs": [{"name": "treeshap_output"}]}),
        (V2_PATH, {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 8],
                               "data": [1.0] * 8}], "outputs": [{"name": "shap"}]}),
    ],
)  # fmt: skip
def test_bad_rows_get_the_routes_4xx(explaining: ServerProcess, path: str, body: Any) -> None:
    response = httpx.post(f"{explaining.base_url}{path}", json=body, timeout=30)
    assert response.status_code in (400, 422), response.text
    assert response.json()["error"]


def test_svr_does_not_explain(svr_server: ServerProcess, rows: np.ndarray) -> None:
    base = svr_server.base_url
    answers = [
        httpx.post(f"{base}{V1_PATH}", json={"instances": rows[:2].tolist()}, timeout=30),
        httpx.post(f"{base}/explain", json=objects(rows[:2]), timeout=30),
        httpx.post(f"{base}{V2_PATH}", json=v2_request(rows[:2], ["treeshap_output"]), timeout=30),
    ]
    for answer in answers:
        assert answer.status_code == 501, answer.text
        assert "only hgb" in answer.json()["error"] and "'svr'" in answer.json()["error"]
    with pytest.raises(grpc.RpcError) as e:
        grpc_explain(svr_server, rows[:2], raw=False)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    # Predictions are unaffected.
    assert httpx.post(f"{base}/predict", json=objects(rows[:2]), timeout=30).status_code == 200


def mapped_files(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def test_shap_loads_only_on_the_first_explanation(model_dir: Path, rows: np.ndarray) -> None:
    """Cold start is unchanged: no shap (nor numba's LLVM) until something is explained."""
    with start_server(["--model_dir", str(model_dir)]) as running:
        httpx.post(f"{running.base_url}/predict", json=objects(rows[:3]), timeout=30)
        assert "llvmlite" not in mapped_files(running.process.pid)
        assert "shap/_cext" not in mapped_files(running.process.pid)
        first = httpx.post(
            f"{running.base_url}{V1_PATH}", json={"inputs": rows[:1].tolist()}, timeout=120
        )
        assert first.status_code == 200, first.text
        assert "shap/_cext" in mapped_files(running.process.pid)
