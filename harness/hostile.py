"""Clients that never read their answers, over raw sockets, and what they cost a real server.

Each client pipelines a few V2 requests whose answers are large (the request's `id`, which
V2 echoes, is ~1.9 MB) and then never reads: its answers can only pile up in the server.
Used by tests/test_write_bounds.py and by `perf/hostile_clients.py` (the 260-client run of
docs/operations.md).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx

from harness.server import ServerProcess

# Just under the default 2 MiB body cap, so every request is accepted and echoed.
ID_BYTES = 1_900_000


def echo_request(model_name: str = "housing", id_bytes: int = ID_BYTES) -> bytes:
    """One V2 request whose answer is `id_bytes` long: the `id` comes back in the answer."""
    body = (
        b'{"id":"'
        + b"x" * id_bytes
        + b'","inputs":[{"name":"input-0","shape":[1,8],"datatype":"FP64",'
        + b'"data":[8.3252,41,6.98,1.02,322,2.55,37.88,-122.23]}]}'
    )
    head = (
        f"POST /v2/models/{model_name}/infer HTTP/1.1\r\nHost: t\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


def non_reader(port: int, request: bytes, pipelined: int) -> socket.socket:
    """A connection that sends `pipelined` copies of `request` and never reads.

    Its receive buffer is made as small as the kernel allows, so that the server's answers
    stay in the server rather than in this process's socket.
    """
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    with contextlib.suppress(OSError):  # the server may drop it while it is still sending
        for _ in range(pipelined):
            sock.sendall(request)
    return sock


def rss_mib(pid: int) -> float:
    """Resident set size of a process, from /proc."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise LookupError(f"no VmRSS for {pid}")


def metric(server: ServerProcess, name: str) -> float:
    """The sum of a metric's samples on the server's /metrics (0 when absent)."""
    total = 0.0
    for line in httpx.get(f"{server.base_url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in (" ", "{"):
            total += float(line.split()[-1])
    return total


@dataclass
class Peak:
    """Highest RSS seen while sampling, and when."""

    rss_mib: float = 0.0


@contextlib.contextmanager
def sampling_rss(pid: int, every: float = 0.05) -> Iterator[Peak]:
    """Sample a process's RSS in a thread while the block runs; the peak is in the result."""
    peak = Peak(rss_mib(pid))
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            with contextlib.suppress(LookupError, OSError):
                peak.rss_mib = max(peak.rss_mib, rss_mib(pid))
            stop.wait(every)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()


def wait_for(check: Callable[[], bool], timeout: float, every: float = 0.1) -> bool:
    """Poll `check()` until it is true or `timeout` passes; whether it became true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every)
    return check()
