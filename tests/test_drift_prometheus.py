"""Drift end to end: a real Prometheus, running the drift rules, scrapes two real servers.

One server is fed real block groups as they are (namespace `unshifted`), the other the same
rows with incomes up by 60% and one more occupant per household (namespace `shifted`), over
legacy `/predict`, V1, V2 REST and V2 gRPC. The rules (their 1h window cut to 30 s, their
30 minutes to 1 s) must then record a PSI under 0.1 for every feature of the unshifted feed,
above 0.2 for the two shifted features, and fire HousingInputDrift for those two only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import httpx
import numpy as np
import pytest
from kserve import InferenceGRPCClient
from kserve.protocol.infer_type import InferInput, InferRequest

from harness.server import ServerProcess, start_server
from predictor.protocol.schema import FEATURES
from predictor.train import load_statlib
from tests.test_drift_rules import write_rules
from tests.test_prometheus import evaluate, prometheus_binary, start_prometheus

__all__ = ["prometheus_binary"]  # the fixture, shared with tests/test_prometheus.py

SHIFTED: Final = {"MedInc": ("scale", 1.6), "AveOccup": ("add", 1.0)}
BATCH: Final = 100
BATCHES: Final = 24  # 2400 rows per feed


def shift(rows: np.ndarray) -> np.ndarray:
    out = rows.copy()
    for name, (how, amount) in SHIFTED.items():
        column = FEATURES.index(name)
        out[:, column] = out[:, column] * amount if how == "scale" else out[:, column] + amount
    return out


def grpc_predict(server: ServerProcess, rows: np.ndarray) -> None:
    async def call() -> None:
        client = InferenceGRPCClient(url=server.grpc_target, timeout=30)
        tensor = InferInput(name="input-0", shape=list(rows.shape), datatype="FP64")
        tensor.set_data_from_numpy(rows, binary_data=False)
        try:
            await client.infer(InferRequest(model_name="housing", infer_inputs=[tensor]))
        finally:
            await client.close()

    asyncio.run(call())


def feed(server: ServerProcess, rows: np.ndarray) -> None:
    """Every row once, in batches, round-robin over the four ways in."""
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        for index, start in enumerate(range(0, len(rows), BATCH)):
            batch = rows[start : start + BATCH]
            objects = [dict(zip(FEATURES, row, strict=True)) for row in batch.tolist()]
            way = index % 4
            if way == 0:
                answer = client.post("/predict", json=objects)
            elif way == 1:
                answer = client.post("/v1/models/housing:predict", json={"instances": objects})
            elif way == 2:
                tensor = {"name": "input-0", "datatype": "FP64", "shape": list(batch.shape)}
                body = {"inputs": [{**tensor, "data": batch.ravel().tolist()}]}
                answer = client.post("/v2/models/housing/infer", json=body)
            else:
                grpc_predict(server, batch)
                continue
            assert answer.status_code == 200, answer.text
            time.sleep(0.2)


@pytest.fixture(scope="module")
def drift_run(
    prometheus_binary: str,
    model_dir: Path,
    data_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, float]]:
    work = tmp_path_factory.mktemp("prometheus-drift")
    features = load_statlib(data_path).features
    pick = np.random.default_rng(16).choice(len(features), size=BATCH * BATCHES, replace=False)
    rows = features[pick]
    rules = write_rules(work / "rules.yml", window="30s", hold="1s")
    args = ["--model_dir", str(model_dir), "--max_batch_size", str(BATCH)]
    with start_server(args) as plain, start_server(args) as shifted:
        url, process = start_prometheus(
            prometheus_binary, work, {"unshifted": plain, "shifted": shifted}, rules
        )
        try:
            feed(plain, rows)
            feed(shifted, shift(rows))
            time.sleep(4)  # scrapes, rule evaluations, the alert's hold
            yield url, time.time()
        finally:
            process.terminate()
            process.wait(30)


def psi_by_feature(url: str, at: float, namespace: str) -> dict[str, float]:
    found = evaluate(url, at, f'housing:feature_psi:1h{{namespace="{namespace}"}}')
    return {r["metric"]["feature"]: float(r["value"][1]) for r in found}


def test_unshifted_inputs_show_no_drift(drift_run: tuple[str, float]) -> None:
    psi = psi_by_feature(*drift_run, "unshifted")
    print("PSI, unshifted feed:", {name: round(value, 4) for name, value in psi.items()})
    assert set(psi) == set(FEATURES)
    assert max(psi.values()) < 0.1, psi


def test_shifted_features_drift_and_alert(drift_run: tuple[str, float]) -> None:
    url, at = drift_run
    psi = psi_by_feature(url, at, "shifted")
    print("PSI, shifted feed:", {name: round(value, 4) for name, value in psi.items()})
    assert set(psi) == set(FEATURES)
    assert {name for name, value in psi.items() if value > 0.2} == set(SHIFTED)
    assert {name for name, value in psi.items() if value >= 0.1} == set(SHIFTED)
    alerts = evaluate(url, at, 'ALERTS{alertname="HousingInputDrift", alertstate="firing"}')
    fired = {(a["metric"]["namespace"], a["metric"]["feature"]) for a in alerts}
    assert fired == {("shifted", name) for name in SHIFTED}
