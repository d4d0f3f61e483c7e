"""The gRPC port under hostile HTTP/2 clients (raw frames, harness.h2_client), against a real
server: no request takes the process down, and one client's cost is bounded (streams,
non-readers, pings, incomplete messages, CONTINUATION and reset floods, admission), while
other clients are still answered. Timings and RSS are printed (`-s`), never asserted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import h2.exceptions
import httpx
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

from harness.h2_client import SERVICE, RawH2, call_headers, grpc_message
from harness.hostile import rss_mib, wait_for
from harness.server import ServerProcess, start_server

ROW = [8.3252, 41.0, 6.98, 1.02, 322.0, 2.55, 37.88, -122.23]
INFER = f"/{SERVICE}/ModelInfer".encode()
STREAMS = 10
NON_READER_WAIT_SECONDS = 8.0
# Short bounds, so that each case shows within seconds (environment: the flags' names).
BOUNDS = {
    "HOUSING_GRPC_MAX_CONCURRENT_STREAMS": str(STREAMS),
    "HOUSING_GRPC_KEEPALIVE_SECONDS": "1",
    "HOUSING_GRPC_KEEPALIVE_TIMEOUT_SECONDS": "1",
    "HOUSING_GRPC_RECEIVE_TIMEOUT_SECONDS": "2",
    "HOUSING_GRPC_MAX_CONNECTION_AGE_SECONDS": "3",
    "HOUSING_GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS": "1",
    "HOUSING_CLIENT_ERROR_LOG_LINES_PER_MINUTE": "3",
}


@pytest.fixture(scope="module")
def bounded(model_dir: Path) -> Iterator[ServerProcess]:
    with start_server(["--model_dir", str(model_dir)], env=BOUNDS) as server:
        yield server


def infer_request(rows: int = 1, id: str = "", explain: bool = False) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="housing", id=id)
    tensor = request.inputs.add(name="input-0", datatype="FP64", shape=[rows, 8])
    tensor.contents.fp64_contents.extend(ROW * rows)
    if explain:
        request.outputs.add(name="treeshap_output")
    return request


def answered(server: ServerProcess, timeout: float = 10) -> float:
    """A well-behaved client's ServerReady and ModelInfer; seconds they took."""
    started = time.perf_counter()
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerReady(pb.ServerReadyRequest(), timeout=timeout).ready
        answer = stub.ModelInfer(infer_request(), timeout=timeout)
        assert answer.outputs[0].contents.fp64_contents
    return time.perf_counter() - started


def rest_answers(server: ServerProcess) -> bool:
    return httpx.get(f"{server.base_url}/v2/health/ready", timeout=10).status_code == 200


def grpc_answers_again(server: ServerProcess, within: float) -> bool:
    def ok() -> bool:
        try:
            answered(server, timeout=1)
        except grpc.RpcError:
            return False
        return True

    return wait_for(ok, within)


@pytest.mark.parametrize(
    "headers",
    [
        call_headers(path=f"/{SERVICE}/Model\xffInfer".encode("latin-1")),
        call_headers(authority=b"h\xffst"),
        call_headers(extra=[(b"x-note", b"v\xffl")]),
    ],
    ids=[":path", ":authority", "header value"],
)
def test_non_utf8_header_bytes_do_not_take_the_process_down(
    bounded: ServerProcess, headers: list[tuple[bytes, bytes]]
) -> None:
    started = time.monotonic()
    with RawH2(bounded.grpc_port) as client:
        stream = client.call(headers, grpc_message(b""))
        seen = client.read(5, until=lambda: stream in client.seen.statuses)
    time.sleep(0.5)  # the issue: the process was gone within 0.2 s
    assert bounded.process.poll() is None, bounded.log()[-3000:]
    assert rest_answers(bounded)
    assert grpc_answers_again(bounded, within=5), bounded.log()[-3000:]
    took = time.monotonic() - started
    print(f"\n{headers}: status {seen.statuses}, gRPC again after {took:.2f} s")
    assert stream in seen.statuses or stream in seen.resets or seen.closed


def test_max_concurrent_streams_is_advertised(bounded: ServerProcess) -> None:
    with RawH2(bounded.grpc_port) as client:
        seen = client.read(3, until=lambda: client.seen.max_concurrent_streams is not None)
    assert seen.max_concurrent_streams == STREAMS


def test_a_client_that_never_reads_is_closed_and_its_memory_freed(
    bounded: ServerProcess,
) -> None:
    pid = bounded.process.pid
    before = rss_mib(pid)
    # Each answer echoes the request's ~4 MB id; window 0 and a tiny socket buffer: the
    # server can send none of it.
    request = grpc_message(infer_request(id="x" * 4_000_000).SerializeToString())
    client = RawH2(bounded.grpc_port, window=0, rcvbuf=4096)
    started = time.monotonic()
    for _ in range(STREAMS):
        client.call(call_headers(path=INFER), request)
    time.sleep(1.0)
    pinned = rss_mib(pid)
    other = answered(bounded)  # another client, meanwhile
    # Not a byte read, for longer than the connection's age and grace (3 + 1 s). (grpc-core
    # 1.85 sends this connection no keepalive PING at all: only the age bound closes it.)
    time.sleep(NON_READER_WAIT_SECONDS)
    after = rss_mib(pid)
    seen = client.read(5)
    took = time.monotonic() - started
    client.close()
    print(
        f"\nnon-reader: RSS {before:.0f} → {pinned:.0f} → {after:.0f} MiB, closed={seen.closed} "
        f"(GOAWAY {seen.goaway}) within {took:.1f} s, other client {other * 1000:.0f} ms"
    )
    assert seen.closed
    assert after - before < (pinned - before) / 2 + 20, (before, pinned, after)


def test_a_ping_flood_draws_goaway(bounded: ServerProcess) -> None:
    with RawH2(bounded.grpc_port) as client:
        client.ping(100)
        seen = client.read(10, until=lambda: client.seen.goaway is not None)
    print(f"\nping flood: GOAWAY {seen.goaway}, acks {seen.pings_acked}")
    assert seen.goaway is not None and seen.goaway.error_code == 11  # ENHANCE_YOUR_CALM
    assert answered(bounded)


def test_a_message_shorter_than_its_length_prefix_is_answered(bounded: ServerProcess) -> None:
    body = infer_request().SerializeToString()
    with RawH2(bounded.grpc_port) as client:
        started = time.monotonic()
        stream = client.call(call_headers(path=INFER), grpc_message(body, len(body) + 100))
        seen = client.read(10, until=lambda: stream in client.seen.statuses)
        took = time.monotonic() - started
    print(f"\nshort message: status {seen.statuses.get(stream)!r} after {took:.1f} s")
    # INVALID_ARGUMENT: the stream ended without a whole message (DEADLINE_EXCEEDED when the
    # message is still expected after --grpc_receive_timeout_seconds).
    assert seen.statuses.get(stream) == b"3"
    assert answered(bounded)


@pytest.mark.xfail(
    strict=True,
    reason="grpc-core 1.85 reads and drops an endless header block (grpc.max_metadata_size "
    "resets the stream only once it ends): only the connection age bound closes it",
)
def test_a_continuation_flood_is_closed(bounded: ServerProcess) -> None:
    pid = bounded.process.pid
    before = rss_mib(pid)
    with RawH2(bounded.grpc_port) as client:
        started = time.monotonic()
        sent = client.continuation_flood(frames=5_000)  # 80 MB of header block at most
        seen = client.read(5)
        took = time.monotonic() - started
    after = rss_mib(pid)
    print(
        f"\nCONTINUATION flood: {sent} frames taken, closed={seen.closed}, GOAWAY "
        f"{seen.goaway}, RSS {before:.0f} → {after:.0f} MiB in {took:.1f} s"
    )
    assert seen.closed or seen.goaway is not None
    assert sent < 5_000
    assert answered(bounded)


def test_rapid_reset_leaves_other_clients_answered(bounded: ServerProcess) -> None:
    request = grpc_message(infer_request(rows=1000, explain=True).SerializeToString())
    stop = threading.Event()
    resets = 0

    def attack() -> None:
        nonlocal resets
        with RawH2(bounded.grpc_port) as client:
            while not stop.is_set() and not client.seen.closed:
                try:
                    stream = client.call(call_headers(path=INFER), request)
                    client.reset(stream)
                except OSError:
                    break
                except h2.exceptions.H2Error:  # the server refused or reset it first
                    pass
                resets += 1
                if resets % 100 == 0:
                    client.read(0.01)

    quiet = [answered(bounded) for _ in range(5)]
    with ThreadPoolExecutor(2) as pool:
        attacks = [pool.submit(attack) for _ in range(2)]
        time.sleep(1.0)
        loud = [answered(bounded, timeout=20) for _ in range(5)]
        stop.set()
        for done in attacks:
            done.result(timeout=30)
    print(
        f"\nrapid reset ({resets} resets): other client {min(quiet) * 1000:.0f} ms quiet, "
        f"{min(loud) * 1000:.0f}-{max(loud) * 1000:.0f} ms under attack"
    )


def test_a_client_gone_mid_answer_is_one_warning_line(bounded: ServerProcess) -> None:
    before = len(bounded.log())
    request = grpc_message(infer_request(id="x" * 2_000_000).SerializeToString())
    for _ in range(6):
        client = RawH2(bounded.grpc_port, window=0)
        client.call(call_headers(path=INFER), request)
        client.read(0.3)
        client.close()
    time.sleep(1.0)
    written = bounded.log()[before:]
    print(f"\nclients gone mid-answer: the log wrote\n{written[-2000:]}")
    assert "Traceback" not in written and '"ERROR"' not in written, written
    assert answered(bounded)


@pytest.fixture(scope="module")
def one_slot(model_dir: Path) -> Iterator[ServerProcess]:
    args = ["--model_dir", str(model_dir), "--max_inflight", "1"]
    with start_server(args) as server:
        yield server


def test_grpc_explanations_take_admission(one_slot: ServerProcess) -> None:
    request = infer_request(rows=1000, explain=True)

    def explain() -> grpc.StatusCode:
        with grpc.insecure_channel(one_slot.grpc_target) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            try:
                stub.ModelInfer(request, timeout=60)
            except grpc.RpcError as e:
                code: grpc.StatusCode = e.code()  # type: ignore[attr-defined]
                return code
            return grpc.StatusCode.OK

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: explain(), range(8)))
    print(f"\n8 explanations, one slot: {codes} in {time.monotonic() - started:.1f} s")
    assert grpc.StatusCode.OK in codes
    assert grpc.StatusCode.UNAVAILABLE in codes
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}
