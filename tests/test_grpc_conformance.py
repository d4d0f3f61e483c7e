"""gRPC as real clients expect it, against a real server: health, TLS, deadlines, request
ids in logs, reflection v1, tritonclient's repository calls, tensors with two contents."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2 as v1alpha
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

from harness.payloads import sample_rows
from harness.server import REPO, ServerProcess, free_port, spawn_server, start_server
from perf.loadgen import k6_executable
from predictor.protocol.schema import FEATURES
from tests.slow_model import write_slow_model

SERVICE = "inference.GRPCInferenceService"
MODEL = "housing"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture(scope="module")
def repository_server(model_dir: Path) -> Iterator[ServerProcess]:
    """Model repository on, JSON logs."""
    args = ["--model_dir", str(model_dir), "--enable_model_repository", "true"]
    with start_server([*args, "--log_format", "json"]) as server:
        yield server


def rest_ready(server: ServerProcess) -> bool:
    return httpx.get(f"{server.base_url}/v2/health/ready", timeout=10).status_code == 200


def rest_repository(server: ServerProcess, action: str) -> None:
    answer = httpx.post(f"{server.base_url}/v2/repository/models/{MODEL}/{action}", timeout=30)
    assert answer.status_code == 200, answer.text


def row_request(row: dict[str, float], request_id: str = "") -> pb.ModelInferRequest:
    tensor = pb.ModelInferRequest().InferInputTensor(
        name="input-0", datatype="FP64", shape=[1, len(FEATURES)]
    )
    tensor.contents.fp64_contents.extend(row[f] for f in FEATURES)
    return pb.ModelInferRequest(model_name=MODEL, id=request_id, inputs=[tensor])


def requests_counted(server: ServerProcess, status: str) -> float:
    prefix = f'housing_request_seconds_count{{route="grpc",status="{status}"}}'
    text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
    lines = [line for line in text.splitlines() if line.startswith(prefix)]
    return float(lines[0].split()[-1]) if lines else 0.0


def eventually(check: Callable[[], bool], seconds: float = 10.0) -> bool:
    """Whether `check` holds within `seconds` (a bound on "at all", not a timing)."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# -- grpc.health.v1.Health ------------------------------------------------------------------


def health_check(target: str, service: str) -> int:
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        status: int = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status
        return status


def test_health_check_answers_serving_for_the_server_and_the_v2_service(
    repository_server: ServerProcess,
) -> None:
    assert health_check(repository_server.grpc_target, "") == SERVING
    assert health_check(repository_server.grpc_target, SERVICE) == SERVING
    with pytest.raises(grpc.RpcError) as raised:
        health_check(repository_server.grpc_target, "no.such.Service")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]


def test_health_agrees_with_rest_readiness_and_watch_streams_an_unload(
    repository_server: ServerProcess,
) -> None:
    target = repository_server.grpc_target
    with grpc.insecure_channel(target) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=SERVICE), timeout=60
        )
        try:
            assert next(watch).status == SERVING
            rest_repository(repository_server, "unload")
            try:
                assert not rest_ready(repository_server)
                assert health_check(target, "") == NOT_SERVING
                assert health_check(target, SERVICE) == NOT_SERVING
                assert next(watch).status == NOT_SERVING
            finally:
                rest_repository(repository_server, "load")
            assert next(watch).status == SERVING
            assert rest_ready(repository_server) and health_check(target, "") == SERVING
        finally:
            watch.cancel()


def test_a_watch_sees_the_drain_and_does_not_hold_the_stop(model_dir: Path) -> None:
    """SIGTERM: an open Watch gets NOT_SERVING and its stream ends, so the process exits
    long before gRPC's 30 s grace period (an endless Watch used to hold it that long)."""
    server = spawn_server(["--model_dir", str(model_dir)])
    try:
        server.wait_ready()
        with grpc.insecure_channel(server.grpc_target) as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service=SERVICE), timeout=60
            )
            assert next(watch).status == SERVING
            server.process.send_signal(signal.SIGTERM)
            assert next(watch).status == NOT_SERVING
            with pytest.raises(StopIteration):
                next(watch)
        assert server.process.wait(20) == 0
    finally:
        server.stop(signal.SIGKILL)
        server.log_path.unlink(missing_ok=True)


# -- TLS -----------------------------------------------------------------------------------


def make_certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def test_grpc_serves_tls_from_the_ssl_settings(model_dir: Path, tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    args = ["--model_dir", str(model_dir), "--ssl_certfile", str(cert), "--ssl_keyfile", str(key)]
    server = spawn_server(args, http_port=free_port())
    trust = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    try:

        def ready_over_tls() -> bool:
            assert server.process.poll() is None, server.log()[-3000:]
            with grpc.secure_channel(server.grpc_target, trust) as channel:
                stub = pb_grpc.GRPCInferenceServiceStub(channel)
                try:
                    return bool(stub.ServerReady(pb.ServerReadyRequest(), timeout=2).ready)
                except grpc.RpcError:
                    return False

        assert eventually(ready_over_tls, 60), server.log()[-3000:]
        with grpc.secure_channel(server.grpc_target, trust) as channel:
            answer = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
                row_request(sample_rows()[0]), timeout=30
            )
        assert answer.outputs[0].contents.fp64_contents[0] > 0
        plain = grpc.insecure_channel(server.grpc_target)
        with plain, pytest.raises(grpc.RpcError) as raised:  # plaintext is refused
            pb_grpc.GRPCInferenceServiceStub(plain).ServerReady(pb.ServerReadyRequest(), timeout=5)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    finally:
        server.stop()
        server.log_path.unlink(missing_ok=True)


# -- deadlines and cancellations in the request metric ------------------------------------


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Each model call takes 1 s (tests.slow_model)."""
    model = write_slow_model(tmp_path_factory.mktemp("slow"), 1.0)
    with start_server(["--model_dir", str(model)]) as server:
        yield server


def fresh_row(n: int) -> dict[str, float]:
    """A row no earlier call sent (so no cache tier answers it)."""
    row = dict(sample_rows()[0])
    row["MedInc"] = 1.0 + n / 1000.0 + time.time() % 1.0 / 1e6
    return row


def test_a_call_past_its_deadline_is_counted_deadline_exceeded(
    slow_server: ServerProcess,
) -> None:
    before = {s: requests_counted(slow_server, s) for s in ("DEADLINE_EXCEEDED", "INTERNAL")}
    with grpc.insecure_channel(slow_server.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.ModelInfer(row_request(fresh_row(1)), timeout=0.3)
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # type: ignore[attr-defined]
    assert eventually(
        lambda: (
            requests_counted(slow_server, "DEADLINE_EXCEEDED") == before["DEADLINE_EXCEEDED"] + 1
        )
    ), httpx.get(f"{slow_server.base_url}/metrics").text
    time.sleep(1.5)  # the model call finishes behind the cancelled request
    assert requests_counted(slow_server, "INTERNAL") == before["INTERNAL"]


def test_a_call_the_client_cancels_is_counted_cancelled(slow_server: ServerProcess) -> None:
    before = {s: requests_counted(slow_server, s) for s in ("CANCELLED", "INTERNAL")}
    with grpc.insecure_channel(slow_server.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        call = stub.ModelInfer.future(row_request(fresh_row(2)), timeout=30)
        time.sleep(0.3)
        assert call.cancel()
    assert eventually(
        lambda: requests_counted(slow_server, "CANCELLED") == before["CANCELLED"] + 1
    ), httpx.get(f"{slow_server.base_url}/metrics").text
    time.sleep(1.5)
    assert requests_counted(slow_server, "INTERNAL") == before["INTERNAL"]


# -- request ids in gRPC log lines --------------------------------------------------------


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def bad_row() -> dict[str, float]:
    row = dict(sample_rows()[0])
    row["MedInc"] = -1.0
    return row


@pytest.mark.parametrize(
    ("metadata", "request_id", "expected"),
    [
        ((("x-request-id", "grpc-header-id-1"),), "field-id-1", "grpc-header-id-1"),
        ((), "field-id-2", "field-id-2"),
    ],
)
def test_grpc_log_lines_carry_the_request_id(
    repository_server: ServerProcess,
    metadata: tuple[tuple[str, str], ...],
    request_id: str,
    expected: str,
) -> None:
    before = len(repository_server.log())
    with grpc.insecure_channel(repository_server.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.ModelInfer(row_request(bad_row(), request_id), metadata=metadata, timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]

    def logged() -> list[dict[str, Any]]:
        written = json_lines(repository_server.log()[before:])
        return [line for line in written if "MedInc" in line["message"]]

    assert eventually(lambda: bool(logged())), repository_server.log()[before:]
    assert [line.get("request_id") for line in logged()] == [expected]


# -- reflection v1 ------------------------------------------------------------------------


def v1_reflection_messages() -> tuple[type[Message], type[Message]]:
    """`grpc.reflection.v1`'s request and response: grpcio-reflection ships only v1alpha,
    whose messages v1 repeats field for field under the new package name."""
    source = descriptor_pb2.FileDescriptorProto()
    v1alpha.DESCRIPTOR.CopyToProto(source)
    source.name, source.package = "grpc/reflection/v1/reflection.proto", "grpc.reflection.v1"
    for message in source.message_type:
        for field in message.field:
            if field.type_name:
                field.type_name = field.type_name.replace(".v1alpha.", ".v1.")
    source.ClearField("service")
    pool = descriptor_pool.DescriptorPool()
    built = pool.Add(source)
    return (
        message_factory.GetMessageClass(built.message_types_by_name["ServerReflectionRequest"]),
        message_factory.GetMessageClass(built.message_types_by_name["ServerReflectionResponse"]),
    )


def test_reflection_v1_lists_the_services(repository_server: ServerProcess) -> None:
    request_class, response_class = v1_reflection_messages()
    with grpc.insecure_channel(repository_server.grpc_target) as channel:
        info = channel.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        answers = list(info(iter([request_class(list_services="")]), timeout=10))
    names = {s.name for s in answers[0].list_services_response.service}  # type: ignore[attr-defined]
    assert {SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} <= names
    assert "grpc.reflection.v1alpha.ServerReflection" in names


K6_REFLECTING_CLIENT = """
import grpc from 'k6/net/grpc';
import { Counter } from 'k6/metrics';
const client = new grpc.Client();
const answered = new Counter('answered');
// A threshold on a metric with no data passes: count the answers, so that a failed
// reflection (an exception before any answer) fails the run.
export const options = { iterations: 2, thresholds: { answered: ['count==2'] } };
export default function () {
  if (__ITER === 0) client.connect(__ENV.TARGET, { plaintext: true, reflect: true });
  const answer = client.invoke('inference.GRPCInferenceService/ModelInfer', JSON.parse(__ENV.BODY));
  if (answer.status === grpc.StatusOK && answer.message.outputs.length === 1) answered.add(1);
}
"""


def test_k6_describes_every_listed_service_and_calls_model_infer(
    repository_server: ServerProcess, tmp_path: Path
) -> None:
    """k6 (grpc-go's reflection client) asks for the file of every service listed: one it
    cannot describe (v1 reflection, before) made it give up on reflection altogether."""
    script = tmp_path / "reflecting.js"
    script.write_text(K6_REFLECTING_CLIENT)
    row = list(sample_rows()[0].values())
    body = {
        "model_name": MODEL,
        "inputs": [
            {"name": "input-0", "datatype": "FP64", "shape": [1, 8],
             "contents": {"fp64_contents": row}},
        ],
    }  # fmt: skip
    env = {**os.environ, "TARGET": repository_server.grpc_target, "BODY": json.dumps(body)}
    done = subprocess.run(
        [k6_executable(), "run", "--quiet", "--no-color", str(script)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


# -- tritonclient's repository calls ------------------------------------------------------


def triton_repository(server: ServerProcess, action: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "tests.triton_repository_probe", server.grpc_target]
    done = subprocess.run(
        [*command, action, MODEL], cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    )
    outcome: dict[str, Any] = json.loads(done.stdout)
    return outcome


def test_tritonclient_unloads_and_loads_the_model(repository_server: ServerProcess) -> None:
    assert triton_repository(repository_server, "unload") == {"value": None}
    try:
        assert not rest_ready(repository_server)
    finally:
        assert triton_repository(repository_server, "load") == {"value": None}
    assert rest_ready(repository_server)


def test_kserves_own_layout_unloads_and_loads_the_model(repository_server: ServerProcess) -> None:
    with grpc.insecure_channel(repository_server.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        unloaded = stub.RepositoryModelUnload(
            pb.RepositoryModelUnloadRequest(model_name=MODEL), timeout=30
        )
        assert (unloaded.model_name, unloaded.isUnloaded) == (MODEL, True)
        try:
            assert not rest_ready(repository_server)
        finally:
            loaded = stub.RepositoryModelLoad(
                pb.RepositoryModelLoadRequest(model_name=MODEL), timeout=30
            )
        assert (loaded.model_name, loaded.isLoaded) == (MODEL, True)
    assert rest_ready(repository_server)


def test_tritonclient_repository_calls_are_refused_when_disabled(server: ServerProcess) -> None:
    outcome = triton_repository(server, "unload")
    assert "PERMISSION_DENIED" in outcome["error"]
    assert rest_ready(server)


# -- a tensor with two *_contents ---------------------------------------------------------


def test_a_tensor_with_two_contents_fields_is_invalid_argument(server: ServerProcess) -> None:
    request = row_request(sample_rows()[0])
    request.inputs[0].contents.int64_contents.extend(range(len(FEATURES)))
    channel = grpc.insecure_channel(server.grpc_target)
    with channel, pytest.raises(grpc.RpcError) as raised:
        pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    details = raised.value.details() or ""  # type: ignore[attr-defined]
    assert "fp64_contents" in details and "int64_contents" in details, details
