"""The HTTP wire against a real server, over raw sockets: upgrades, log lines, ports."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

from harness.server import ServerProcess, spawn_server, start_server
from predictor.protocol.schema import FEATURES

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"
# A line the text log format would start with, had a client forged one.
FORGED = re.compile(r"^(\d{4}-\d\d-\d\dT\S+ )?FORGED", re.MULTILINE)


@pytest.fixture(scope="module")
def text_logs(model_dir: Path) -> Iterator[ServerProcess]:
    with start_server(["--model_dir", str(model_dir), "--log_format", "text"]) as server:
        yield server


def responses(sock: socket.socket, wait: float = 3.0) -> bytes:
    """Everything the server sends until it closes, or until `wait` seconds of silence."""
    sock.settimeout(wait)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        pass
    return data


def test_an_unsupported_upgrade_never_smuggles_its_body_as_a_request(
    text_logs: ServerProcess,
) -> None:
    """The body of a POST with `Upgrade: foo` arrives in a later segment and is a request of
    its own, which the parser would take for the next one on the connection: it is read as
    the POST's body (not JSON: 400 saying so), and nothing else is answered."""
    for protocol in (b"foo", b"h2c"):
        with socket.create_connection(("127.0.0.1", text_logs.http_port)) as sock:
            sock.sendall(
                b"POST /predict HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: "
                + protocol
                + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                % len(SMUGGLED)
            )
            time.sleep(0.2)
            sock.sendall(SMUGGLED)
            data = responses(sock)
        assert data.count(b"HTTP/1.1 ") == 1, data  # one request, one answer
        assert data.startswith(b"HTTP/1.1 400 "), data
        assert b"JSON" in data and b"Upgrade" not in data.partition(b"\r\n\r\n")[2], data
    assert "smuggled" not in text_logs.log()
    assert "Unsupported upgrade request" not in text_logs.log()


def test_an_upgrade_with_a_body_is_served_and_the_next_request_too(
    text_logs: ServerProcess,
) -> None:
    """What Java's HttpClient and `curl --http2` send: the body split over segments, a
    request pipelined right behind it; both answered 200, the first with its prediction."""
    body = json.dumps([dict.fromkeys(FEATURES, 1.0) | {"Latitude": 37.0, "Longitude": -122.0}])
    head = (
        b"POST /predict HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    after = b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\n"
    with socket.create_connection(("127.0.0.1", text_logs.http_port)) as sock:
        sock.sendall(head + body[:10].encode())
        time.sleep(0.2)
        sock.sendall(body[10:].encode() + after)
        data = responses(sock, 1.5)
    assert data.count(b"HTTP/1.1 200 OK") == 2, data
    assert b'"prediction":[' in data, data


def test_an_upgrade_with_a_chunked_body_is_refused(text_logs: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", text_logs.http_port)) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n" % len(SMUGGLED)
            + SMUGGLED
            + b"\r\n0\r\n\r\n"
        )
        data = responses(sock)
    assert data.count(b"HTTP/1.1 ") == 1 and data.startswith(b"HTTP/1.1 400 "), data
    assert b"unsupported Upgrade on a chunked request" in data


def test_an_unsupported_upgrade_without_a_body_is_served_as_a_plain_request(
    text_logs: ServerProcess,
) -> None:
    """What `curl --http2` sends to a plain-HTTP server: served, and so is the next one."""
    request = b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n"
    with socket.create_connection(("127.0.0.1", text_logs.http_port)) as sock:
        sock.sendall(
            request + b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            b"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n" + request + b"\r\n"
        )
        data = responses(sock, 1.5)
    assert data.count(b"HTTP/1.1 200 OK") == 2, data


def status_of(server: ServerProcess, request: bytes) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", server.http_port)) as sock:
        sock.sendall(request)
        data = responses(sock, 1.5)
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0
    return status, data


@pytest.mark.parametrize(
    ("request_head", "status", "says"),
    [
        (b"GET /v2/health/live HTTP/1.1\r\n\r\n", 400, b"exactly one Host header"),
        (b"GET /v2/health/live HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, b"exactly one"),
        (b"GET /v2/health/live HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400, b"exactly one"),
        (b"GET /v2/health/live HTTP/2.0\r\nHost: a\r\n\r\n", 505, b"HTTP/2.0 is not served"),
        (b"GET /v2/health/live HTTP/0.9\r\nHost: a\r\n\r\n", 505, b"HTTP/0.9 is not served"),
        (b"GET /v2/health/live HTTP/1.0\r\n\r\n", 200, b'{"live":true}'),
    ],
    ids=["1.1-no-host", "1.1-two-hosts", "1.0-two-hosts", "2.0", "0.9", "1.0-no-host"],
)
def test_host_and_version_as_rfc_9112_says(
    text_logs: ServerProcess, request_head: bytes, status: int, says: bytes
) -> None:
    """HTTP/1.1 needs exactly one Host (HTTP/1.0 may send none); other versions are 505,
    where they were answered as HTTP/1.1."""
    got, data = status_of(text_logs, request_head)
    assert got == status, data
    assert says in data, data


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/models/x%0d%0aFORGED%0a:predict", {"instances": [[1.0] * 8]}),
        (
            "/v2/models/housing/infer",
            {"inputs": [{"name": "x", "shape": [1, 8], "datatype": "F\nFORGED", "data": [1] * 8}]},
        ),
    ],
    ids=["v1-model-name", "v2-datatype"],
)
def test_text_logs_escape_what_clients_send(
    text_logs: ServerProcess, path: str, body: dict[str, object]
) -> None:
    before = len(text_logs.log())
    response = httpx.post(f"{text_logs.base_url}{path}", json=body, timeout=30)
    assert 400 <= response.status_code < 500
    time.sleep(0.3)
    written = text_logs.log()[before:]
    assert "FORGED" in written  # the line is there, the client's text in it
    assert not FORGED.search(written), written


def test_text_logs_escape_a_grpc_model_name(text_logs: ServerProcess) -> None:
    before = len(text_logs.log())
    with grpc.insecure_channel(text_logs.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError):
            stub.ModelInfer(pb.ModelInferRequest(model_name="x\nFORGED"), timeout=30)
    time.sleep(0.3)
    written = text_logs.log()[before:]
    assert "FORGED" in written
    assert not FORGED.search(written), written


def test_client_hang_ups_are_no_server_errors(text_logs: ServerProcess) -> None:
    """A client that goes away in the middle of its body, on kserve's routes too."""
    before = len(text_logs.log())
    for path in ("/v1/models/housing:explain", "/v2/models/housing/infer", "/predict"):
        with socket.create_connection(("127.0.0.1", text_logs.http_port)) as sock:
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                "Content-Length: 100\r\n\r\n{".encode()
            )
            time.sleep(0.2)
    time.sleep(0.5)
    written = text_logs.log()[before:]
    assert "Traceback" not in written and " ERROR " not in written, written


def test_a_taken_grpc_port_is_refused_at_start(text_logs: ServerProcess, model_dir: Path) -> None:
    second = spawn_server(["--model_dir", str(model_dir)], grpc_port=text_logs.grpc_port)
    try:
        code = second.process.wait(60)
        log = second.log()
        assert code != 0, log[-3000:]
        assert f"gRPC port {text_logs.grpc_port} is in use" in log, log[-3000:]
        assert "Traceback" not in log, log[-3000:]
    finally:
        second.stop()
        second.log_path.unlink(missing_ok=True)
    assert httpx.get(f"{text_logs.base_url}/v2/health/ready", timeout=10).status_code == 200
