"""Hostile connections against a real server, over raw sockets: stalled, slow, huge, malformed.

Bounds are set short here (1 s for headers, 2 s for a body) so the tests wait little; the
defaults are a few seconds (docs/operations.md).
"""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from harness.server import ServerProcess, spawn_server, start_server
from tests.slow_model import write_slow_model

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 2.0
MAX_INFLIGHT = 2
LIMIT_FLAGS = [
    "--header_timeout_seconds",
    str(HEADER_TIMEOUT),
    "--body_timeout_seconds",
    str(BODY_TIMEOUT),
    "--max_inflight",
    str(MAX_INFLIGHT),
]
# How long a test waits for an answer that the server owes within a bound: the bound plus
# a margin for a busy machine. Not a speed claim.
MARGIN = 10.0


@pytest.fixture(scope="module")
def bounded(model_dir: Path) -> Iterator[ServerProcess]:
    with start_server(["--model_dir", str(model_dir), *LIMIT_FLAGS]) as server:
        yield server


def connect(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.http_port), timeout=30)
    sock.settimeout(HEADER_TIMEOUT + BODY_TIMEOUT + MARGIN)
    return sock


def answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read one whole response (the server closes after each of these)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def kept_alive_status(sock: socket.socket) -> int:
    """Read one response with a Content-Length off a connection that stays open."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split()[1])


def refused(server: ServerProcess) -> dict[str, float]:
    counts = {}
    for line in httpx.get(f"{server.base_url}/metrics", timeout=10).text.splitlines():
        if line.startswith("housing_http_refused_total{"):
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            counts[reason] = float(line.split()[-1])
    return counts


def stalled_body(server: ServerProcess, path: str = "/predict") -> socket.socket:
    """Headers announcing 100 bytes of body, then 2 of them, then silence."""
    sock = connect(server)
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        "Content-Length: 100\r\n\r\n[{".encode()
    )
    return sock


def test_stalled_bodies_take_no_slot_and_get_408(
    bounded: ServerProcess, sample: list[dict[str, float]]
) -> None:
    before = refused(bounded).get("body_timeout", 0)
    stalled = [stalled_body(bounded) for _ in range(MAX_INFLIGHT + 2)]
    stalled.append(stalled_body(bounded, "/v2/models/housing/infer"))
    time.sleep(0.3)
    # More stalled clients than slots, and inference still answers.
    assert httpx.post(f"{bounded.base_url}/predict", json=sample, timeout=30).status_code == 200
    v1 = httpx.post(
        f"{bounded.base_url}/v1/models/housing:predict", json={"instances": sample}, timeout=30
    )
    assert v1.status_code == 200
    for sock in stalled:
        status, headers, body = answer(sock)
        assert status == 408
        assert headers["connection"] == "close"
        assert headers["content-type"] == "application/json"
        assert "body not received within 2 s" in json.loads(body)["error"]
        sock.close()
    assert refused(bounded)["body_timeout"] - before == len(stalled)


def test_slow_headers_get_408_and_a_silent_connection_is_closed(bounded: ServerProcess) -> None:
    slow = connect(bounded)
    slow.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n")  # never ends its headers
    silent = connect(bounded)
    status, _, body = answer(slow)
    assert status == 408 and "headers not received within 1 s" in json.loads(body)["error"]
    assert silent.recv(1) == b""  # closed without an answer: it asked nothing
    # A kept-alive connection is bounded again from the first byte of its next request.
    with connect(bounded) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\n")
        assert kept_alive_status(sock) == 200
        time.sleep(HEADER_TIMEOUT + 0.5)  # idle keep-alive: uvicorn's longer timeout applies
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\n")
        assert kept_alive_status(sock) == 200
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\n")
        status, _, _ = answer(sock)
        assert status == 408


def test_a_huge_header_is_refused_early_and_others_are_served(
    bounded: ServerProcess, sample: list[dict[str, float]]
) -> None:
    """64 MB of one header: 431 once 64 KiB are passed, the rest never read."""
    sent = 0
    with connect(bounded) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\nX-Big: ")
        chunk = b"a" * 65536
        with pytest.raises(OSError):  # reset or broken pipe once the server has closed
            for _ in range(1024):
                sock.sendall(chunk)
                sent += len(chunk)
        assert sent < 8 * 1024 * 1024
        with ThreadPoolExecutor(1) as pool:
            other = pool.submit(
                httpx.post, f"{bounded.base_url}/predict", json=sample, timeout=30
            ).result()
        assert other.status_code == 200
    assert refused(bounded)["header_too_large"] >= 1


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ("".join(f"X-H{i}: v\r\n" for i in range(128)), "more than 128 headers"),
        (f"X-Big: {'a' * 70_000}\r\n", "exceed 65536 bytes"),
        (f"Cookie: {'c' * 40_000}\r\nX-More: {'m' * 30_000}\r\n", "exceed 65536 bytes"),
    ],
    ids=["count", "one-header", "two-headers"],
)
def test_header_caps_answer_431(bounded: ServerProcess, headers: str, message: str) -> None:
    with connect(bounded) as sock:
        sock.sendall(f"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n{headers}\r\n".encode())
        status, response_headers, body = answer(sock)
    assert status == 431
    assert response_headers["content-type"] == "application/json"
    assert message in json.loads(body)["error"]


def test_headers_at_the_cap_are_served(bounded: ServerProcess) -> None:
    headers = "".join(f"X-H{i}: {'v' * 480}\r\n" for i in range(126))  # 127 fields, ~60 KiB
    with connect(bounded) as sock:
        sock.sendall(f"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n{headers}\r\n".encode())
        assert kept_alive_status(sock) == 200


def test_a_malformed_request_gets_a_json_400(bounded: ServerProcess) -> None:
    with connect(bounded) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        status, headers, body = answer(sock)
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"error": "malformed HTTP request"}


def test_sigterm_finishes_complete_requests_and_drops_stalled_ones(
    tmp_path: Path, sample: list[dict[str, float]]
) -> None:
    """A request whose body is in finishes (the model takes 2 s); stalled ones get 408
    within the body bound, and the process exits without waiting out kserve's 30 s grace."""
    model = write_slow_model(tmp_path / "slow", 2.0)
    server = spawn_server(["--model_dir", str(model), *LIMIT_FLAGS])
    try:
        server.wait_ready()
        stalled = [stalled_body(server) for _ in range(3)]
        half_headers = connect(server)
        half_headers.sendall(b"POST /predict HTTP/1.1\r\nHost: t\r\n")
        with ThreadPoolExecutor(1) as pool:
            complete = pool.submit(
                httpx.post, f"{server.base_url}/predict", json=sample[:1], timeout=30
            )
            time.sleep(0.5)  # the complete request is in the model now
            signalled = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            response = complete.result()
        assert response.status_code == 200 and response.json()["prediction"] == [2.0]
        for sock in stalled:
            assert answer(sock)[0] == 408
        assert half_headers.recv(1) == b""  # closed at shutdown: it had no request yet
        assert server.process.wait(BODY_TIMEOUT + MARGIN) == 0
        assert time.monotonic() - signalled < 30  # kserve's grace period, never waited out
        log = server.log()
        assert "Traceback" not in log
    finally:
        server.stop(signal.SIGKILL)
        server.log_path.unlink(missing_ok=True)
