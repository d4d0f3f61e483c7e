"""Others' latency while hostile clients send large bodies, with large-body offloading off and on.

    make fairness                          # python -m perf.fairness --model_dir model
    make fairness FAIRNESS_ARGS=--quick    # 3 s per phase

For each mode (`--offload_body_bytes` huge: every body decoded on the event loop, as
before; then the default), one server is started and measured twice with wrk: small V1
requests alone, then the same while `--hostile` clients loop on 2 MB V2 bodies whose data
does not fill their shape (each answered 400). Compare the P50/P99 of the small requests
across the phases of one run; the machine's load average is in the report (the numbers are
only comparable within one run). Writes `fairness-<stamp>.md/.json` to `--out`
(by default the ignored perf/results/; `--curate`: docs/results/).
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import orjson

from harness import payloads
from perf import procs, report
from perf.loadgen import WrkResult, run_wrk
from predictor.protocol.schema import N_FEATURES

MODES: Final = {"on the event loop (before)": 1 << 40, "off the loop (default)": None}
BODY_BYTES: Final = 2_000_000


def hostile_request(path: str) -> bytes:
    """A V2 request of about 2 MB (under the 2 MiB cap): shape [1, 8], ~200k values."""
    values = BODY_BYTES // 10
    tensor = {"name": "input-0", "shape": [1, N_FEATURES], "datatype": "FP64"}
    body = orjson.dumps({"inputs": [{**tensor, "data": [1.2345678] * values}]})
    head = f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
    return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


@dataclass
class Hostile:
    """Threads looping on one large request each over keep-alive sockets (I/O in C, so the
    generator costs little CPU); counts the statuses answered."""

    port: int
    request: bytes
    clients: int
    statuses: Counter[int] = field(default_factory=Counter)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for _ in range(self.clients):
            thread = threading.Thread(target=self._loop, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sock:
                    while not self._stop.is_set():
                        sock.sendall(self.request)
                        self.statuses[_read_status(sock)] += 1
            except OSError:
                self.statuses[0] += 1  # connection closed or reset: reconnect
                time.sleep(0.05)


def _read_status(sock: socket.socket) -> int:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split()[1])


@dataclass
class Phase:
    mode: str
    hostile_clients: int
    small: WrkResult
    hostile_statuses: dict[int, int]


def measure(options: Any) -> list[Phase]:
    small_path = payloads.path("v1")
    small_body = payloads.body("v1", payloads.fixed_row())
    phases = []
    for mode, threshold in MODES.items():
        extra = [] if threshold is None else ["--offload_body_bytes", str(threshold)]
        service = procs.spawn_predictor(options.model_dir, extra)
        with procs.running(service, procs.PREDICTOR_READY_PATH):
            url = service.base_url + small_path
            run_wrk(url, small_body, 1, options.connections)  # warm-up
            for clients in (0, options.hostile):
                hostile = Hostile(service.port, hostile_request(payloads.path("v2")), clients)
                hostile.start()
                time.sleep(0.5 if clients else 0)
                try:
                    small = run_wrk(url, small_body, options.seconds, options.connections)
                finally:
                    hostile.stop()
                phases.append(Phase(mode, clients, small, dict(hostile.statuses)))
                print(f"{mode}, {clients} hostile: {_line(phases[-1])}", flush=True)
    return phases


def _line(phase: Phase) -> str:
    s = phase.small
    return f"{s.requests_per_s:,.0f} req/s, P50 {s.p50_ms:.2f} ms, P99 {s.p99_ms:.2f} ms"


def render(info: dict[str, Any], options: Any, phases: Sequence[Phase]) -> str:
    rows = [
        [
            p.mode,
            p.hostile_clients,
            p.small.requests_per_s,
            p.small.p50_ms,
            p.small.p99_ms,
            p.small.errors,
            ", ".join(f"{n}x {s or 'reset'}" for s, n in sorted(p.hostile_statuses.items())) or "-",
        ]
        for p in phases
    ]
    header = ["large bodies decoded", "hostile clients", "small req/s", "P50 ms", "P99 ms"]
    header += ["small errors", "hostile answers"]
    return "\n\n".join(
        [
            report.machine_line(info),
            f"Small requests: one-row V1 bodies, wrk with {options.connections} connections, "
            f"{options.seconds:g} s per phase. Hostile: {options.hostile} clients looping on "
            f"~2 MB V2 bodies whose data does not fill shape [1, 8].",
            report.table(header, rows),
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = report.tool_parser("fairness", __doc__.split("\n")[0], "Server logs.")
    parser.add_argument("--seconds", type=float, default=10.0, help="Seconds per phase.")
    parser.add_argument("--hostile", type=int, default=4, help="Hostile clients.")
    parser.add_argument("--connections", type=int, default=4, help="wrk connections.")
    parser.add_argument("--quick", action="store_true", help="3 s per phase.")
    options = parser.parse_args(argv)
    if options.quick:
        options.seconds = 3.0
    report.resolve_outputs(parser, options)
    report.make_dirs(options.out, options.work_dir)
    info = report.machine()
    phases = measure(options)
    name = f"fairness-{report.stamp()}"
    data = {"machine": info, "phases": [asdict(p) for p in phases]}
    written = report.write_results(options.out, name, data, render(info, options, phases))
    print(f"wrote {written.md_path} and {written.json_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
