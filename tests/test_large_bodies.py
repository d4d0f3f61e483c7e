"""Bodies above --offload_body_bytes (64 KiB) are checked off the event loop: the same
answers as small ones, refused before kserve parses them when they cannot be right.
(What it buys in others' latency is measured by perf/fairness.py, not asserted here.)"""

from __future__ import annotations

import httpx
import pytest

from predictor.protocol.schema import FEATURES

V2 = "/v2/models/housing/infer"


def v2_body(data: list[float] | list[list[float]], shape: list[int]) -> dict[str, object]:
    return {"inputs": [{"name": "input-0", "shape": shape, "datatype": "FP64", "data": data}]}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (v2_body([1.5] * 200_000, [1, 8]), "data holds 200000 items, shape [1, 8] takes 8"),
        (v2_body([1.5] * 16_000, [2000, 8]), "2000 rows exceed max_batch_size 1000"),
        (v2_body([1.5] * 7_999 + ["x"], [1000, 8]), "must hold numbers only"),  # type: ignore[list-item]
        ({**v2_body([[1.5] * 7] * 1000, [1000, 8]), "id": "p" * 70_000}, "holds 7000 values"),
        ({"instances": [[1.5] * 8] * 5000}, "5000 rows exceed max_batch_size 1000"),
        ({"inputs": [{"name": "input-0"}], "pad": "x" * 100_000}, "inputs[0].shape is missing"),
    ],
    ids=["data-vs-shape", "rows", "not-numbers", "short-rows", "v1-rows", "outline"],
)
def test_large_bad_bodies_get_400_saying_why(
    client: httpx.Client, body: dict[str, object], message: str
) -> None:
    path = "/v1/models/housing:predict" if "instances" in body else V2
    response = client.post(path, json=body)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_large_good_bodies_are_answered_like_small_ones(
    client: httpx.Client, sample: list[dict[str, float]]
) -> None:
    # Values with 17 significant digits: 1000 rows are about 150 KB of JSON.
    rows = [[item[f] * (1 + 1e-13) for f in FEATURES] for item in sample]
    many = (rows * (1000 // len(rows) + 1))[:1000]
    small = client.post(V2, json=v2_body([v for r in rows for v in r], [len(rows), 8]))
    flat = client.post(V2, json=v2_body([v for r in many for v in r], [1000, 8]))
    nested = client.post(V2, json=v2_body(many, [1000, 8]))
    assert len(flat.request.content) > 64 * 1024
    for response in (small, flat, nested):
        assert response.status_code == 200, response.text
    answers = flat.json()["outputs"][0]["data"]
    assert answers[: len(rows)] == small.json()["outputs"][0]["data"]
    assert nested.json()["outputs"][0]["data"] == answers
    v1 = client.post("/v1/models/housing:predict", json={"instances": many})
    assert v1.status_code == 200 and v1.json()["predictions"] == answers
    objects = [dict(zip(FEATURES, row, strict=True)) for row in many]
    legacy = client.post("/predict", json=objects)
    assert len(legacy.request.content) > 64 * 1024
    assert legacy.status_code == 200 and legacy.json()["prediction"] == answers
