"""Smoke-test every route of a running deployment.

    .venv/bin/python scripts/smoke.py BASE_URL [--host HOST] [--grpc TARGET] [--model housing]

BASE_URL is where the server answers (`http://localhost:8080`, or an ingress gateway's
address); `--host` sets the Host header Istio/Knative route on. `--grpc HOST:PORT` also
checks V2 gRPC (on a gRPC-serving deployment). Checks readiness, liveness, metadata, the
legacy route, V1 and V2 (identical predictions for identical rows), a 422 for a bad item,
and /metrics, with the rows of tests/data/sample.json. Prints one line per check, what it
sent and what it got; stops at the first failure and exits non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

SAMPLE = Path(__file__).resolve().parents[1] / "tests" / "data" / "sample.json"
FEATURES = (
    "MedInc", "HouseAge", "AveRooms", "AveBedrms", "Population", "AveOccup", "Latitude",
    "Longitude",
)  # fmt: skip
SHOWN_CHARS = 100


class SmokeFailure(AssertionError):
    pass


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise SmokeFailure(what)


def shown(text: str) -> str:
    """`text` on one line, cut to a readable length."""
    flat = " ".join(text.split())
    return flat if len(flat) <= SHOWN_CHARS else flat[: SHOWN_CHARS - 3] + "..."


def numbers(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{value:.4g}" for value in values) + "]"


@dataclass(frozen=True)
class Check:
    sent: str
    """What the check sends, e.g. `GET /v2/health/live`."""
    run: Callable[[], str]
    """Sends it; returns what came back, or raises SmokeFailure saying what was wrong."""


class HttpChecks:
    """The HTTP checks, in order: the predictions of /predict are what V1, V2 and gRPC
    must give for the same rows."""

    def __init__(self, client: httpx.Client, model: str, sample: list[dict[str, float]]):
        self.client = client
        self.model = model
        self.sample = sample
        self.predictions: list[float] = []

    def checks(self) -> list[Check]:
        model, rows = self.model, f"{len(self.sample)} rows of tests/data/sample.json"
        return [
            Check(f"GET /v1/models/{model}", self.v1_ready),
            Check("GET /v2/health/live", lambda: self.status_200("/v2/health/live")),
            Check("GET /v2/health/ready", lambda: self.status_200("/v2/health/ready")),
            Check(f"GET /v2/models/{model}", self.v2_metadata),
            Check(f"POST /predict with {rows}", self.legacy),
            Check(f"POST /v1/models/{model}:predict with the same rows", self.v1),
            Check(f"POST /v2/models/{model}/infer with the same rows as FP64", self.v2),
            Check("POST /predict with 2 rows, the second with MedInc -1", self.bad_item),
            Check("GET /metrics", self.metrics),
        ]

    def status_200(self, path: str) -> str:
        response = self.client.get(path)
        expect(response.status_code == 200, f"{response.status_code} {shown(response.text)}")
        return f"{response.status_code} {shown(response.text)}".rstrip()

    def v1_ready(self) -> str:
        response = self.client.get(f"/v1/models/{self.model}")
        expect(response.json().get("ready") is True, f"{response.status_code} {response.text}")
        return f"{response.status_code} {shown(response.text)}"

    def v2_metadata(self) -> str:
        response = self.client.get(f"/v2/models/{self.model}")
        tensor = response.json()["inputs"][0]
        expect(tensor["shape"] == [-1, 8], f"{response.status_code} {shown(response.text)}")
        return f"{response.status_code}, input {tensor['name']} {tensor['datatype']} [-1, 8]"

    def legacy(self) -> str:
        response = self.client.post("/predict", json=self.sample)
        expect(response.status_code == 200, f"{response.status_code} {shown(response.text)}")
        body = response.json()
        expect(len(body["query_key"]) == 32, f"query_key {body['query_key']!r}")
        expect(len(body["prediction"]) == len(self.sample), f"{shown(response.text)}")
        headers = {name: response.headers.get(name) for name in ("X-Cache", "X-Model-Version")}
        expect(None not in headers.values(), f"headers X-Cache, X-Model-Version: {headers}")
        self.predictions = body["prediction"]
        return (
            f"200, query_key {body['query_key']}, predictions {numbers(self.predictions)}, "
            f"X-Cache {headers['X-Cache']}, X-Model-Version {headers['X-Model-Version'][:16]}"
        )

    def v1(self) -> str:
        response = self.client.post(
            f"/v1/models/{self.model}:predict", json={"instances": self.sample}
        )
        expect(response.status_code == 200, f"{response.status_code} {shown(response.text)}")
        got: list[float] = response.json()["predictions"]
        expect(got == self.predictions, f"{numbers(got)}, not /predict's")
        return f"200, predictions {numbers(got)}, the same as /predict's"

    def v2(self) -> str:
        tensor = {"name": "input-0", "shape": [len(self.sample), 8], "datatype": "FP64"}
        tensor["data"] = flat_rows(self.sample)
        response = self.client.post(f"/v2/models/{self.model}/infer", json={"inputs": [tensor]})
        expect(response.status_code == 200, f"{response.status_code} {shown(response.text)}")
        got: list[float] = response.json()["outputs"][0]["data"]
        expect(got == self.predictions, f"{numbers(got)}, not /predict's")
        return f"200, outputs {numbers(got)}, the same as /predict's"

    def bad_item(self) -> str:
        items = [self.sample[0], {**self.sample[1], "MedInc": -1}]
        response = self.client.post("/predict", json=items)
        expect(response.status_code == 422, f"{response.status_code}, expected 422")
        return f"422 {shown(response.text)}"

    def metrics(self) -> str:
        response = self.client.get("/metrics")
        expect(response.status_code == 200, f"{response.status_code}")
        expect("housing_request_seconds" in response.text, "no housing_request_seconds")
        lines = len(response.text.splitlines())
        return f"200, {lines} lines of Prometheus text with housing_request_seconds"


def flat_rows(sample: list[dict[str, float]]) -> list[float]:
    return [float(item[f]) for item in sample for f in FEATURES]


def grpc_infer(target: str, host: str | None, http: HttpChecks) -> str:
    """V2 ModelInfer over gRPC with the sample's rows: the predictions /predict gave."""
    argv, sys.argv = sys.argv, sys.argv[:1]  # kserve parses sys.argv when first imported
    try:
        import grpc
        from kserve import InferenceGRPCClient
        from kserve.protocol.infer_type import InferInput, InferRequest
    finally:
        sys.argv = argv

    async def call() -> list[float]:
        options = [("grpc.default_authority", host)] if host else None
        client = InferenceGRPCClient(url=target, channel_args=options, timeout=30)
        try:
            tensor = InferInput("input-0", [len(http.sample), 8], "FP64")
            tensor.data = flat_rows(http.sample)
            response = await client.infer(InferRequest(http.model, [tensor]))
            values: list[float] = response.outputs[0].as_numpy().tolist()
            return values
        finally:
            await client.close()

    try:
        got = asyncio.run(call())
    except grpc.RpcError as e:
        raise SmokeFailure(f"{e.code()}: {e.details()}") from e
    expect(got == http.predictions, f"{numbers(got)}, not /predict's")
    return f"outputs {numbers(got)}, the same as /predict's"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=".venv/bin/python scripts/smoke.py",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument("base_url")
    parser.add_argument("--host", help="Host header (Knative/Istio routing)")
    parser.add_argument("--grpc", help="HOST:PORT of the V2 gRPC endpoint")
    parser.add_argument("--model", default="housing")
    args = parser.parse_args(argv)
    sample = json.loads(SAMPLE.read_text())
    headers = {"Host": args.host} if args.host else {}
    with httpx.Client(base_url=args.base_url, headers=headers, timeout=60) as client:
        http = HttpChecks(client, args.model, sample)
        checks = http.checks()
        if args.grpc:
            sent = f"gRPC ModelInfer to {args.grpc} with the same rows as FP64"
            checks.append(Check(sent, lambda: grpc_infer(args.grpc, args.host, http)))
        for check in checks:
            try:
                got = check.run()
            except (SmokeFailure, httpx.HTTPError, KeyError, IndexError, TypeError) as e:
                print(f"FAIL {check.sent}: {e}", file=sys.stderr)
                return 1
            except ValueError as e:  # JSON that does not parse, among others
                print(f"FAIL {check.sent}: {type(e).__name__}: {e}", file=sys.stderr)
                return 1
            print(f"ok   {check.sent} -> {got}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
