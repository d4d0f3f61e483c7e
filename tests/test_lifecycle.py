"""Shutdown and overload, driven through a real server with a slowed model."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from harness.server import ServerProcess, spawn_server
from tests.slow_model import write_slow_model

MODEL_SECONDS = 2.0


@pytest.fixture(scope="module")
def slow_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_slow_model(tmp_path_factory.mktemp("slow"), MODEL_SECONDS)


@pytest.fixture()
def slow_server(slow_model_dir: Path) -> Iterator[ServerProcess]:
    server = spawn_server(["--model_dir", str(slow_model_dir), "--max_inflight", "3"])
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop(signal.SIGKILL)
        server.log_path.unlink(missing_ok=True)


def unique_rows(sample: list[dict[str, float]], n: int) -> list[list[dict[str, float]]]:
    return [[{**sample[0], "Population": 5000.0 + i}] for i in range(n)]


def wait_until_in_flight(server: ServerProcess, expected: int) -> None:
    """Wait until the server reports `expected` inference requests in flight."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        metrics = httpx.get(f"{server.base_url}/metrics", timeout=5).text
        if f"housing_inflight_requests {expected}.0" in metrics:
            return
        time.sleep(0.02)
    raise AssertionError(f"never saw {expected} requests in flight")


def test_sigterm_finishes_accepted_requests_and_refuses_new_ones(
    slow_server: ServerProcess, sample: list[dict[str, float]]
) -> None:
    bodies = unique_rows(sample, 3)
    with ThreadPoolExecutor(len(bodies)) as pool, httpx.Client(timeout=30) as client:
        url = f"{slow_server.base_url}/predict"
        futures = [pool.submit(client.post, url, json=body) for body in bodies]
        wait_until_in_flight(slow_server, len(bodies))
        slow_server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        with pytest.raises(httpx.ConnectError):
            httpx.post(url, json=bodies[0], timeout=5)
        responses = [f.result() for f in futures]
    assert [r.status_code for r in responses] == [200] * len(bodies)
    assert all(r.json()["prediction"] == [2.0] for r in responses)
    # The grace period is kserve's 30 s; the process leaves as soon as the work is done.
    assert slow_server.process.wait(30) == 0


def test_beyond_max_inflight_requests_get_503_at_once(
    slow_server: ServerProcess, sample: list[dict[str, float]]
) -> None:
    bodies = unique_rows(sample, 4)
    url = f"{slow_server.base_url}/predict"
    with ThreadPoolExecutor(3) as pool, httpx.Client(timeout=30) as client:
        futures = [pool.submit(client.post, url, json=body) for body in bodies[:3]]
        wait_until_in_flight(slow_server, 3)
        shed = [
            client.post(url, json=bodies[3]),
            client.post(
                f"{slow_server.base_url}/v1/models/housing:predict", json={"instances": bodies[3]}
            ),
        ]
        admitted = [f.result() for f in futures]
    assert [r.status_code for r in admitted] == [200, 200, 200]
    for response in shed:
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        assert "overloaded" in response.json()["error"]
    # Probes are never shed, and the server serves again once the load is gone.
    assert httpx.get(f"{slow_server.base_url}/v2/health/ready").status_code == 200
    assert httpx.post(url, json=bodies[3], timeout=30).status_code == 200
