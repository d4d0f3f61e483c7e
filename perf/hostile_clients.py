"""What clients that never read their answers cost a real server: RSS, slots, answers.

Starts the predictor, measures its RSS, opens `--clients` connections that each pipeline
`--pipelined` V2 requests echoing a ~1.9 MB `id` and never read (harness/hostile.py), then
for `--hold` seconds samples RSS, `housing_inflight_requests` and whether a small V1
request is answered; then closes the clients and measures RSS again after `--after`
seconds. Also samples the machine's TCP buffer memory, where unread answers that left
the server's process wait. Prints one JSON object. Extra arguments after `--` go to the
server, e.g.
`.venv/bin/python -m perf.hostile_clients --model_dir model -- --write_timeout_seconds 5`.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from harness.hostile import echo_request, metric, non_reader, rss_mib, sampling_rss
from harness.server import ServerProcess, spawn_server

ROW = [8.3252, 41, 6.98, 1.02, 322, 2.55, 37.88, -122.23]


def _sample(server: ServerProcess, v1: str, pid: int, at: float) -> dict[str, object]:
    """Slots taken, whether a small V1 request is answered, and RSS, at one moment (an
    answer that takes over 10 s is recorded as its error's name)."""
    sample: dict[str, object] = {"t": round(at, 1)}
    try:
        sample["v1"] = httpx.post(v1, json={"instances": [ROW]}, timeout=10).status_code
        sample["inflight"] = metric(server, "housing_inflight_requests")
    except httpx.HTTPError as e:
        sample.setdefault("v1", type(e).__name__)
    sample["rss_mib"] = round(rss_mib(pid))
    sample["tcp_mib"] = round(tcp_buffers_mib())
    return sample


def tcp_buffers_mib() -> float:
    """Memory of all TCP socket buffers on this machine (/proc/net/sockstat, in pages):
    where answers a server wrote but its clients never read wait outside its RSS."""
    with open("/proc/net/sockstat") as sockstat:
        for line in sockstat:
            if line.startswith("TCP:"):
                fields = line.split()
                return int(fields[fields.index("mem") + 1]) * 4096 / 2**20
    raise LookupError("no TCP line in /proc/net/sockstat")


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in args_list:
        cut = args_list.index("--")
        args_list, extra = args_list[:cut], args_list[cut + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", type=Path, required=True)
    parser.add_argument("--clients", type=int, default=260)
    parser.add_argument("--pipelined", type=int, default=3)
    parser.add_argument("--hold", type=float, default=20.0)
    parser.add_argument("--after", type=float, default=10.0)
    args = parser.parse_args(args_list)

    server = spawn_server(["--model_dir", str(args.model_dir), *extra])
    result: dict[str, object] = {"clients": args.clients, "pipelined": args.pipelined}
    try:
        server.wait_ready()
        pid = server.process.pid
        result["rss_before_mib"] = round(rss_mib(pid))
        request = echo_request()
        v1 = f"{server.base_url}/v1/models/housing:predict"
        samples: list[dict[str, object]] = []
        clients: list[socket.socket] = []
        with sampling_rss(pid) as peak, ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            connecting = pool.submit(
                lambda: clients.extend(
                    non_reader(server.http_port, request, args.pipelined)
                    for _ in range(args.clients)
                )
            )
            connected_at: float | None = None
            while connected_at is None or time.monotonic() - connected_at < args.hold:
                if connected_at is None and connecting.done():
                    connected_at = time.monotonic()
                samples.append(_sample(server, v1, pid, time.monotonic() - started))
                time.sleep(1.0)
            result["connect_seconds"] = round(connected_at - started, 1)
            connecting.result()
            for sock in clients:
                sock.close()
        result["rss_peak_mib"] = round(peak.rss_mib)
        time.sleep(args.after)
        result["rss_after_mib"] = round(rss_mib(pid))
        result["dropped"] = {
            reason: metric(server, f'housing_http_dropped_total{{reason="{reason}"}}')
            for reason in ("write_timeout", "unsent_bytes", "unsent_total")
        }
        result["tcp_buffers_max_mib"] = max(int(str(s["tcp_mib"])) for s in samples)
        result["inflight_max"] = max(float(str(s.get("inflight", 0))) for s in samples)
        result["v1_not_200"] = sum(s["v1"] != 200 for s in samples)
        result["samples"] = samples
    finally:
        server.stop()
        server.log_path.unlink(missing_ok=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
