"""Smoke-test every route of a running deployment.

    python scripts/smoke.py BASE_URL [--host HOST] [--grpc TARGET] [--model housing]

BASE_URL is where the server answers (`http://localhost:8080`, or an ingress gateway's
address); `--host` sets the Host header Istio/Knative route on. `--grpc HOST:PORT` also
checks V2 gRPC (on a gRPC-serving deployment). Checks readiness, liveness, metadata, the
legacy route, V1 and V2 (identical predictions for identical rows), a 422 for a bad item,
and /metrics. Exits non-zero and says which check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

SAMPLE = Path(__file__).resolve().parents[1] / "tests" / "data" / "sample.json"
FEATURES = (
    "MedInc", "HouseAge", "AveRooms", "AveBedrms", "Population", "AveOccup", "Latitude",
    "Longitude",
)  # fmt: skip


class SmokeFailure(AssertionError):
    pass


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise SmokeFailure(what)


def check_http(client: httpx.Client, model: str, sample: list[dict[str, float]]) -> list[float]:
    expect(client.get(f"/v1/models/{model}").json().get("ready") is True, "V1 readiness")
    expect(client.get("/v2/health/live").status_code == 200, "V2 liveness")
    expect(client.get("/v2/health/ready").status_code == 200, "V2 readiness")
    metadata = client.get(f"/v2/models/{model}").json()
    expect(metadata["inputs"][0]["shape"] == [-1, 8], f"V2 metadata: {metadata}")

    legacy = client.post("/predict", json=sample)
    expect(legacy.status_code == 200, f"/predict: {legacy.status_code} {legacy.text[:200]}")
    body = legacy.json()
    expect(len(body["query_key"]) == 32 and len(body["prediction"]) == len(sample), "/predict")
    expect("X-Model-Version" in legacy.headers and "X-Cache" in legacy.headers, "headers")
    predictions: list[float] = body["prediction"]

    v1 = client.post(f"/v1/models/{model}:predict", json={"instances": sample})
    expect(v1.status_code == 200, f"V1: {v1.status_code} {v1.text[:200]}")
    expect(v1.json()["predictions"] == predictions, "V1 and /predict disagree")

    flat = [float(item[f]) for item in sample for f in FEATURES]
    tensor = {"name": "input-0", "shape": [len(sample), 8], "datatype": "FP64", "data": flat}
    v2 = client.post(f"/v2/models/{model}/infer", json={"inputs": [tensor]})
    expect(v2.status_code == 200, f"V2: {v2.status_code} {v2.text[:200]}")
    expect(v2.json()["outputs"][0]["data"] == predictions, "V2 and /predict disagree")

    bad = client.post("/predict", json=[sample[0], {**sample[1], "MedInc": -1}])
    expect(bad.status_code == 422, f"bad item: expected 422, got {bad.status_code}")
    expect("housing_request_seconds" in client.get("/metrics").text, "/metrics")
    return predictions


def check_grpc(target: str, host: str | None, model: str, sample: list[dict[str, float]]) -> None:
    argv, sys.argv = sys.argv, sys.argv[:1]  # kserve parses sys.argv when first imported
    try:
        from kserve import InferenceGRPCClient
        from kserve.protocol.infer_type import InferInput, InferRequest
    finally:
        sys.argv = argv

    async def call() -> list[float]:
        options = [("grpc.default_authority", host)] if host else None
        client = InferenceGRPCClient(url=target, channel_args=options, timeout=30)
        try:
            tensor = InferInput("input-0", [len(sample), 8], "FP64")
            tensor.data = [float(item[f]) for item in sample for f in FEATURES]
            response = await client.infer(InferRequest(model, [tensor]))
            values: list[float] = response.outputs[0].as_numpy().tolist()
            return values
        finally:
            await client.close()

    expect(len(asyncio.run(call())) == len(sample), "gRPC ModelInfer")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("base_url")
    parser.add_argument("--host", help="Host header (Knative/Istio routing)")
    parser.add_argument("--grpc", help="HOST:PORT of the V2 gRPC endpoint")
    parser.add_argument("--model", default="housing")
    args = parser.parse_args(argv)
    sample = json.loads(SAMPLE.read_text())
    headers = {"Host": args.host} if args.host else {}
    checks: list[tuple[str, Callable[[], Any]]] = []
    with httpx.Client(base_url=args.base_url, headers=headers, timeout=60) as client:
        checks.append(("HTTP routes", lambda: check_http(client, args.model, sample)))
        if args.grpc:
            checks.append(("gRPC", lambda: check_grpc(args.grpc, args.host, args.model, sample)))
        for name, check in checks:
            try:
                check()
            except (SmokeFailure, httpx.HTTPError, KeyError, ValueError) as e:
                print(f"FAIL {name}: {e}", file=sys.stderr)
                return 1
            print(f"ok   {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
