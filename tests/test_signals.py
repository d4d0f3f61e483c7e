"""SIGQUIT drains like SIGTERM; SIGHUP is logged and ignored (a real server, a slowed model)."""

from __future__ import annotations

import json
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from harness.server import spawn_server
from tests.slow_model import write_slow_model

MODEL_SECONDS = 2.0
V1 = "/v1/models/housing:predict"
ROW = [8.3252, 41, 6.98, 1.02, 322, 2.55, 37.88, -122.23]


@pytest.fixture(scope="module")
def slow_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_slow_model(tmp_path_factory.mktemp("slow"), MODEL_SECONDS)


def test_sigquit_finishes_requests_in_flight_like_sigterm(slow_model_dir: Path) -> None:
    """Requests accepted before the signal are answered by the model, whether they were
    in the model already or still sending their body (kserve's own SIGQUIT unloaded the
    model at once: 404 "Model with name housing does not exist")."""
    server = spawn_server(["--model_dir", str(slow_model_dir)])
    try:
        server.wait_ready()
        body = json.dumps({"instances": [ROW]}).encode()
        head = (
            f"POST {V1} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        with ThreadPoolExecutor(1) as pool:
            in_model = pool.submit(
                httpx.post,
                f"{server.base_url}{V1}",
                json={"instances": [[*ROW[:4], 1000.0, *ROW[5:]]]},
                timeout=30,
            )
            sending = socket.create_connection(("127.0.0.1", server.http_port), timeout=30)
            sending.sendall(head + body[:10])
            time.sleep(0.7)  # one request is in the model, one is sending its body
            server.process.send_signal(signal.SIGQUIT)
            time.sleep(0.3)
            sending.sendall(body[10:])
            status = int(sending.recv(65536).split()[1])
            sending.close()
            assert in_model.result().status_code == 200
        assert status == 200
        assert server.process.wait(MODEL_SECONDS + 10) == 0
        assert "Traceback" not in server.log()
    finally:
        server.stop(signal.SIGKILL)
        server.log_path.unlink(missing_ok=True)


def test_sighup_is_logged_and_ignored(slow_model_dir: Path) -> None:
    server = spawn_server(["--model_dir", str(slow_model_dir)])
    try:
        server.wait_ready()
        server.process.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert server.process.poll() is None, server.log()[-3000:]
        response = httpx.get(f"{server.base_url}/v2/health/ready", timeout=10)
        assert response.status_code == 200
        assert "SIGHUP received: ignored" in server.log()
        assert server.stop() == 0
    finally:
        server.stop(signal.SIGKILL)
        server.log_path.unlink(missing_ok=True)
