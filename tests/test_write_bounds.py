"""Write-side bounds against a real server: clients that never read their answers.

Each hostile client pipelines V2 requests echoing a ~1.9 MB `id` and never reads. Bounds
are set short here (1 s to take an answer, 8 MiB of unsent answers in all) so the tests
wait little; docs/operations.md gives the defaults.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness.hostile import (
    ID_BYTES,
    echo_request,
    metric,
    non_reader,
    rss_mib,
    sampling_rss,
    wait_for,
)
from harness.server import ServerProcess, spawn_server, start_server

WRITE_TIMEOUT = 1.0
MAX_INFLIGHT = 8
HOSTILE = 24  # three times the slots
WRITE_FLAGS = [
    "--max_inflight",
    str(MAX_INFLIGHT),
    "--write_timeout_seconds",
    str(WRITE_TIMEOUT),
    "--max_unsent_bytes",
    str(8 * 1024 * 1024),
]
# How long a test waits for something the server owes within a bound: the bound plus a
# margin for a busy machine. Not a speed claim.
MARGIN = 10.0
V1 = "/v1/models/housing:predict"
ROW = [8.3252, 41, 6.98, 1.02, 322, 2.55, 37.88, -122.23]


@pytest.fixture()
def bounded(model_dir: Path) -> Iterator[ServerProcess]:
    with start_server(["--model_dir", str(model_dir), *WRITE_FLAGS]) as server:
        yield server


def inference_answers(server: ServerProcess) -> bool:
    response = httpx.post(f"{server.base_url}{V1}", json={"instances": [ROW]}, timeout=30)
    return response.status_code == 200


def test_non_readers_give_back_their_slots_and_memory(bounded: ServerProcess) -> None:
    pid = bounded.process.pid
    request = echo_request()
    baseline = rss_mib(pid)
    with sampling_rss(pid) as peak:
        clients = [non_reader(bounded.http_port, request, 3) for _ in range(HOSTILE)]
        try:
            # Their answers cannot be written: the connections that hold them are dropped
            # (within the write bound at most), every slot is free again and inference
            # answers while they are still connected. (A connection whose answers all
            # went into the kernel's socket buffer holds neither a slot nor memory here.)
            assert wait_for(
                lambda: (
                    metric(bounded, "housing_http_dropped_total") >= MAX_INFLIGHT
                    and metric(bounded, "housing_inflight_requests") == 0
                ),
                MARGIN,
            )
            assert inference_answers(bounded)
        finally:
            for sock in clients:
                sock.close()
    # Unsent answers are bounded in all (8 MiB here); what each request costs while it is
    # decoded and answered comes on top. Unbounded, these clients hold ~12 MB each.
    assert peak.rss_mib - baseline < 200, (baseline, peak.rss_mib)
    assert wait_for(lambda: rss_mib(pid) - baseline < 60, MARGIN), (baseline, rss_mib(pid))


def test_sigterm_drops_non_readers_within_the_write_bound(model_dir: Path) -> None:
    server = spawn_server(["--model_dir", str(model_dir), *WRITE_FLAGS])
    try:
        server.wait_ready()
        clients = [non_reader(server.http_port, echo_request(), 2) for _ in range(4)]
        time.sleep(0.5)
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(WRITE_TIMEOUT + MARGIN) == 0
        assert time.monotonic() - signalled < WRITE_TIMEOUT + MARGIN  # kserve's grace: 30 s
        for sock in clients:
            sock.close()
        log = server.log()
        assert "Traceback" not in log and "CancelledError" not in log, log[-3000:]
    finally:
        server.stop(signal.SIGKILL)
        server.log_path.unlink(missing_ok=True)


def test_a_reading_client_gets_a_large_answer_whole(bounded: ServerProcess) -> None:
    """The bounds drop clients that do not read, never one that reads, however large."""
    body = echo_request().partition(b"\r\n\r\n")[2]
    with contextlib.closing(httpx.Client(timeout=30)) as client:
        for _ in range(3):
            response = client.post(
                f"{bounded.base_url}/v2/models/housing/infer",
                content=body,
                headers={"content-type": "application/json"},
            )
            assert response.status_code == 200
            assert response.json()["id"] == "x" * ID_BYTES


@pytest.fixture(scope="module")
def patient(model_dir: Path) -> Iterator[ServerProcess]:
    """A write bound longer than the tests wait: only the byte bounds can drop anyone."""
    args = ["--model_dir", str(model_dir), "--write_timeout_seconds", "120"]
    args += ["--max_unsent_bytes", str(2 * 1024 * 1024)]
    with start_server(args) as server:
        yield server


def dropped(server: ServerProcess, reason: str) -> float:
    return metric(server, f'housing_http_dropped_total{{reason="{reason}"}}')


def test_a_pipelining_non_reader_is_dropped_when_its_next_answer_is_ready(
    patient: ServerProcess,
) -> None:
    before = dropped(patient, "unsent_bytes")
    with non_reader(patient.http_port, echo_request(), 3):
        assert wait_for(lambda: dropped(patient, "unsent_bytes") > before, MARGIN)
        assert wait_for(lambda: metric(patient, "housing_inflight_requests") == 0, MARGIN)


def test_unsent_answers_of_all_clients_are_bounded(patient: ServerProcess) -> None:
    """Six clients asking once each and never reading: ~1.9 MB each to hold, 2 MiB in all."""
    before = dropped(patient, "unsent_total")
    clients = [non_reader(patient.http_port, echo_request(), 1) for _ in range(6)]
    try:
        assert wait_for(lambda: dropped(patient, "unsent_total") - before >= 3, MARGIN)
        assert inference_answers(patient)
    finally:
        for sock in clients:
            sock.close()
