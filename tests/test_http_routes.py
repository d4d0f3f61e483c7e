"""The legacy, V1 and V2 REST routes of a real server subprocess."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import pytest

from predictor.protocol.schema import FEATURES
from tests.test_keys import client_side_query_key

JSON = {"Content-Type": "application/json"}


def legacy(client: httpx.Client, items: Any) -> httpx.Response:
    return client.post("/predict", json=items)


def v1(client: httpx.Client, instances: Any) -> httpx.Response:
    return client.post("/v1/models/housing:predict", json={"instances": instances})


def v2(client: httpx.Client, data: Any, shape: list[int], datatype: str = "FP64") -> httpx.Response:
    body = {"inputs": [{"name": "input-0", "shape": shape, "datatype": datatype, "data": data}]}
    return client.post("/v2/models/housing/infer", json=body)


def as_array(item: dict[str, float]) -> list[float]:
    return [float(item[f]) for f in FEATURES]


def test_sample_request_gives_the_documented_shape(
    client: httpx.Client, sample: list[dict[str, float]]
) -> None:
    response = legacy(client, sample)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"query_key", "inputs", "prediction"}
    assert body["query_key"] == client_side_query_key(sample)
    assert body["inputs"] == [{f: float(item[f]) for f in FEATURES} for item in sample]
    assert all(isinstance(v, float) for item in body["inputs"] for v in item.values())
    assert len(body["prediction"]) == len(sample)
    # Plausible house values (100k USD) for these block groups, in the original's order:
    # the first (high income) is the most expensive.
    assert all(0.1 < p < 6.0 for p in body["prediction"])
    assert body["prediction"][0] == max(body["prediction"])


def test_extra_keys_and_field_order_do_not_change_the_answer(
    client: httpx.Client, sample: list[dict[str, float]]
) -> None:
    plain = legacy(client, sample).json()
    noisy = [{"id": i, **dict(reversed(list(item.items())))} for i, item in enumerate(sample)]
    assert legacy(client, noisy).json() == plain


def test_one_bad_item_fails_the_whole_request_with_422(
    client: httpx.Client, sample: list[dict[str, float]]
) -> None:
    items = [dict(item) for item in sample]
    items[1]["MedInc"] = -1
    response = legacy(client, items)
    assert response.status_code == 422
    body = response.json()
    assert "prediction" not in body
    assert body["detail"] == [
        {"loc": ["body", 1, "MedInc"], "msg": "Input should be greater than 0"}
    ]
    assert "item 1" in body["error"] and "MedInc" in body["error"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("MedInc", 0),
        ("HouseAge", -1),
        ("AveRooms", 0),
        ("AveBedrms", -0.5),
        ("Population", 0),
        ("AveOccup", 0),
        ("Latitude", 90.5),
        ("Latitude", -91),
        ("Longitude", 180.5),
        ("Longitude", -181),
        ("AveRooms", None),
        ("AveRooms", "6.98"),
        ("AveRooms", True),
    ],
)
def test_each_bound_gives_422_on_legacy_and_400_on_v1(
    client: httpx.Client, sample: list[dict[str, float]], field: str, value: Any
) -> None:
    items = [dict(sample[0]), {**sample[0], field: value}]
    response = legacy(client, items)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", 1, field]
    response = v1(client, items)
    assert response.status_code == 400
    assert field in response.json()["error"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_json_numbers_are_refused(
    client: httpx.Client, sample: list[dict[str, float]], literal: str
) -> None:
    text = json.dumps([sample[0]]).replace("8.3252", literal)
    for path in ("/predict", "/v1/models/housing:predict"):
        body = text if path == "/predict" else f'{{"instances": {text}}}'
        response = client.post(path, content=body, headers=JSON)
        assert 400 <= response.status_code < 500, (path, response.text)


def test_v1_accepts_objects_and_arrays_and_agrees_with_legacy(
    client: httpx.Client, sample: list[dict[str, float]]
) -> None:
    expected = legacy(client, sample).json()["prediction"]
    by_objects = v1(client, sample)
    by_arrays = v1(client, [as_array(item) for item in sample])
    mixed = v1(client, [sample[0], as_array(sample[1]), sample[2], as_array(sample[3])])
    for response in (by_objects, by_arrays, mixed):
        assert response.status_code == 200, response.text
        assert response.json() == {"predictions": expected}


@pytest.mark.parametrize("datatype", ["FP64", "FP32"])
def test_v2_rest_agrees_with_legacy(
    client: httpx.Client, sample: list[dict[str, float]], datatype: str
) -> None:
    expected = legacy(client, sample).json()["prediction"]
    flat = [v for item in sample for v in as_array(item)]
    response = v2(client, flat, [len(sample), 8], datatype)
    assert response.status_code == 200, response.text
    output = response.json()["outputs"][0]
    assert output["datatype"] == "FP64"
    assert output["shape"] == [len(sample)]
    assert output["data"] == expected


@pytest.mark.parametrize(
    ("data", "shape", "datatype", "message"),
    [
        ([1.0] * 8, [1, 7], "FP64", "shape"),
        ([1.0] * 8, [2, 8], "FP64", "shape"),
        ([1.0] * 8, [1, 8], "FP16", "datatype"),
        (["a"] * 8, [1, 8], "FP64", "numbers"),
        ([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 200.0], [1, 8], "FP64", "Longitude"),
    ],
)
def test_v2_bad_tensors_get_400_naming_the_problem(
    client: httpx.Client, data: list[Any], shape: list[int], datatype: str, message: str
) -> None:
    response = v2(client, data, shape, datatype)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


def test_v2_metadata_and_health(client: httpx.Client) -> None:
    metadata = client.get("/v2/models/housing").json()
    assert metadata["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 8]}]
    assert metadata["outputs"] == [
        {"name": "predict", "datatype": "FP64", "shape": [-1]},
        {"name": "treeshap_output", "datatype": "FP64", "shape": [-1, 9]},
    ]
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get("/v1/models/housing").json() == {"name": "housing", "ready": True}


def test_prediction_headers_and_cache_states(
    client: httpx.Client, model_dir: Any, sample: list[dict[str, float]]
) -> None:
    # One form of the version everywhere: the artifact's sha256, its first 16 hex digits.
    version = json.loads((model_dir / "metadata.json").read_text())["model_version"][:16]
    fresh = [{**item, "Population": 1000 + n + math.pi} for n, item in enumerate(sample)]
    first = legacy(client, fresh[:2])
    assert first.headers["X-Cache"] == "MISS"
    assert first.headers["X-Model-Version"] == version
    assert legacy(client, fresh[:2]).headers["X-Cache"] == "HIT"
    partial = v1(client, fresh[:3])
    assert partial.headers["X-Cache"] == "PARTIAL"
    assert partial.headers["X-Model-Version"] == version
    flat = [v for item in fresh[:3] for v in as_array(item)]
    assert v2(client, flat, [3, 8]).headers["X-Cache"] == "HIT"


def test_batch_cap_and_body_cap(client: httpx.Client, sample: list[dict[str, float]]) -> None:
    at_cap = legacy(client, [sample[0]] * 1000)
    assert at_cap.status_code == 200
    over = legacy(client, [sample[0]] * 1001)
    assert over.status_code == 422
    assert "max_batch_size" in over.json()["error"]
    assert v1(client, [sample[0]] * 1001).status_code == 400
    assert v2(client, as_array(sample[0]) * 1001, [1001, 8]).status_code == 400
    huge = b"[" + b" " * (3 * 1024 * 1024) + b"]"
    for path in ("/predict", "/v1/models/housing:predict", "/v2/models/housing/infer"):
        assert client.post(path, content=huge, headers=JSON).status_code == 413


def test_malformed_and_mistyped_bodies_are_client_errors(client: httpx.Client) -> None:
    assert client.post("/predict", content=b"[{", headers=JSON).status_code == 400
    assert client.post("/predict", content=b"[]", headers=JSON).status_code == 422
    assert client.post("/predict", content=b"{}", headers=JSON).status_code == 422
    assert client.post("/predict", content=b"[1, 2]", headers=JSON).status_code == 422
    text = {"Content-Type": "text/plain"}
    assert client.post("/predict", content=b"[]", headers=text).status_code == 415
    assert client.get("/predict").status_code == 405


def hits(client: httpx.Client, tier: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f'housing_cache_hits_total{{tier="{tier}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_exact_repeats_come_from_the_response_memo(
    client: httpx.Client, sample: list[dict[str, float]]
) -> None:
    rows = [{**item, "AveOccup": 3.14159 + n} for n, item in enumerate(sample)]
    first = legacy(client, rows)
    assert first.headers["X-Cache"] == "MISS"
    memo_before, local_before = hits(client, "response"), hits(client, "local")
    again = legacy(client, rows)
    assert (again.headers["X-Cache"], again.content) == ("HIT", first.content)
    assert hits(client, "response") == memo_before + len(rows)
    # The same rows spelled differently miss the memo but hit the per-row cache.
    reordered = legacy(client, [dict(reversed(list(item.items()))) for item in rows])
    assert (reordered.headers["X-Cache"], reordered.json()) == ("HIT", first.json())
    assert hits(client, "local") == local_before + len(rows)


def test_v1_takes_inputs_as_well_as_instances(
    client: httpx.Client, sample: list[dict[str, float]]
) -> None:
    expected = v1(client, sample).json()
    rows = [as_array(item) for item in sample]
    for body in ({"inputs": sample}, {"inputs": rows}):
        response = client.post("/v1/models/housing:predict", json=body)
        assert response.status_code == 200, response.text
        assert response.json() == expected
    both = client.post("/v1/models/housing:predict", json={"instances": rows, "inputs": rows})
    assert both.status_code == 400
    assert '{"inputs": [...]}' in both.json()["error"]


def test_health_is_the_original_services(client: httpx.Client) -> None:
    response = client.get("/health")
    assert (response.status_code, response.json()) == (200, {"status": "healthy"})
    assert response.headers["content-type"] == "application/json"
    assert client.head("/health").status_code == 200
    assert client.post("/health").status_code == 405


def test_the_served_version_answers_like_the_unversioned_routes(
    client: httpx.Client, sample: list[dict[str, float]]
) -> None:
    version = legacy(client, sample).headers["X-Model-Version"]
    metadata = client.get("/v2/models/housing").json()
    assert metadata["versions"] == [version]
    base = f"/v2/models/housing/versions/{version}"
    assert client.get(base).json() == metadata
    assert client.get(f"{base}/ready").json() == client.get("/v2/models/housing/ready").json()
    flat = [v for item in sample for v in as_array(item)]
    body = {
        "inputs": [{"name": "input-0", "shape": [len(sample), 8], "datatype": "FP64", "data": flat}]
    }
    answer = client.post(f"{base}/infer", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == version
    assert answer.json()["outputs"] == v2(client, flat, [len(sample), 8]).json()["outputs"]


@pytest.mark.parametrize("suffix", ["", "/ready", "/infer"])
def test_other_versions_are_404_naming_the_served_one(client: httpx.Client, suffix: str) -> None:
    path = f"/v2/models/housing/versions/1{suffix}"
    response = client.post(path, json={}) if suffix == "/infer" else client.get(path)
    assert response.status_code == 404
    assert "no version '1'" in response.json()["error"]
    version = client.get("/v2/models/housing").json()["versions"][0]
    assert version in response.json()["error"]


def metric_value(client: httpx.Client, name: str, labels: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f"{name}{{") and labels in line:
            return float(line.split()[-1])
    return 0.0


@pytest.mark.parametrize("route", ["legacy", "v1", "v2"])
def test_every_route_moves_kserves_stage_histograms_and_the_request_histogram(
    client: httpx.Client, sample: list[dict[str, float]], route: str
) -> None:
    stages = (
        "request_preprocess_seconds",
        "request_predict_seconds",
        "request_postprocess_seconds",
    )
    model = 'model_name="housing"'
    before = [metric_value(client, f"{stage}_count", model) for stage in stages]
    ours = metric_value(client, "housing_request_seconds_count", f'route="{route}",status="200"')
    rows = [{**item, "AveOccup": 2.0 + n / 7} for n, item in enumerate(sample)]
    flat = [v for item in rows for v in as_array(item)]
    send = {"legacy": lambda: legacy(client, rows), "v1": lambda: v1(client, rows)}
    response = send.get(route, lambda: v2(client, flat, [len(rows), 8]))()
    assert response.status_code == 200, response.text
    after = [metric_value(client, f"{stage}_count", model) for stage in stages]
    assert [a - b for a, b in zip(after, before, strict=True)] == [1.0, 1.0, 1.0]
    counted = metric_value(client, "housing_request_seconds_count", f'route="{route}",status="200"')
    assert counted == ours + 1
