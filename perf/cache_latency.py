"""Latency of one-row requests by cache outcome, against servers on this machine.

    .venv/bin/python -m perf.cache_latency --model_dir model --requests 2000

Starts a private `redis-server` and two predictor processes sharing it (A and B, as two
replicas), plus one without Redis (the `make serve` configuration), then sends one-row
`POST /predict` requests one at a time over a kept-alive connection and reports client-side
p50 / p90 / p99 / max per scenario:

- `no redis, miss` / `no redis, hit (local)`: the in-process cache alone;
- `miss`: a new row on A (local and Redis miss, model, background write to Redis);
- `hit (local)`: the same rows again on A;
- `hit (redis)`: those rows on B, which has never seen them (a Redis hit fills B's local);
- `redis killed, miss` / `redis hung, miss`: new rows on A after SIGKILL / SIGSTOP of Redis
  (the breaker opens after the first failures; the probes every cool-down pay the timeout).

Every answer is checked against the server without Redis. Numbers depend on the machine;
they are meant to compare the scenarios with each other.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from harness.payloads import distinct_rows
from harness.redis_server import running_redis
from harness.server import ServerProcess, spawn_server

Row = dict[str, float]
WARMUP_REQUESTS = 200
BREAKER_COOLDOWN_SECONDS = 5.0  # the server's default


def rows(start: int, count: int) -> list[Row]:
    """Distinct valid rows (unique populations, apart from the tests' rows)."""
    return distinct_rows(start, count, population_from=100_000.0)


@contextlib.contextmanager
def servers(*arg_lists: list[str]) -> Iterator[list[ServerProcess]]:
    started = [spawn_server(args) for args in arg_lists]
    try:
        for server in started:
            server.wait_ready()
        yield started
    finally:
        for server in started:
            server.stop()
            server.log_path.unlink(missing_ok=True)


def measure(
    client: httpx.Client, batch: list[Row], expect: str, check: Callable[[Row, float], None]
) -> list[float]:
    """Send each row alone; return the wall times (seconds). Asserts X-Cache and the value."""
    times = []
    for row in batch:
        started = time.perf_counter()
        response = client.post("/predict", json=[row])
        times.append(time.perf_counter() - started)
        if response.status_code != 200 or response.headers["x-cache"] != expect:
            raise AssertionError(f"{response.status_code} {response.headers}: {response.text}")
        check(row, response.json()["prediction"][0])
    return times


def summary(name: str, times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return (
        f"| {name:<22} | {len(ms):>5} | {q[49]:6.2f} | {q[89]:6.2f} | {q[98]:6.2f} | "
        f"{ms[-1]:7.2f} |"
    )


def run(model_dir: Path, requests: int, work: Path) -> list[str]:
    base = ["--model_dir", str(model_dir)]
    lines = [
        "| scenario               |     n | p50 ms | p90 ms | p99 ms |  max ms |",
        "| ---------------------- | ----: | -----: | -----: | -----: | ------: |",
    ]
    with running_redis(work) as redis_server:
        with_redis = [*base, "--redis_url", redis_server.url]
        with (
            servers(base, with_redis, with_redis) as (plain, a, b),
            httpx.Client(base_url=plain.base_url, timeout=30) as reference,
            httpx.Client(base_url=a.base_url, timeout=30) as client_a,
            httpx.Client(base_url=b.base_url, timeout=30) as client_b,
        ):
            expected: dict[float, float] = {}

            def check(row: Row, value: float) -> None:
                if expected.setdefault(row["Population"], value) != value:
                    raise AssertionError(f"{row}: {value} != {expected[row['Population']]}")

            offset = 0

            def fresh(n: int) -> list[Row]:
                nonlocal offset
                offset += n
                return rows(offset - n, n)

            for client in (reference, client_a, client_b):  # connections, code paths
                measure(client, fresh(WARMUP_REQUESTS), "MISS", check)
            new = fresh(requests)
            lines.append(summary("no redis, miss", measure(reference, new, "MISS", check)))
            lines.append(summary("no redis, hit (local)", measure(reference, new, "HIT", check)))
            new = fresh(requests)
            measure(reference, new, "MISS", check)  # the reference answers
            lines.append(summary("miss", measure(client_a, new, "MISS", check)))
            lines.append(summary("hit (local)", measure(client_a, new, "HIT", check)))
            time.sleep(0.5)  # the last background writes
            lines.append(summary("hit (redis)", measure(client_b, new, "HIT", check)))
            new = fresh(requests)
            measure(reference, new, "MISS", check)
            redis_server.kill()
            lines.append(summary("redis killed, miss", measure(client_a, new, "MISS", check)))
            redis_server.start()
            time.sleep(BREAKER_COOLDOWN_SECONDS + 0.5)
            measure(client_a, fresh(10), "MISS", check)  # the probe closes the breaker
            new = fresh(requests)
            measure(reference, new, "MISS", check)
            redis_server.pause()
            try:
                lines.append(summary("redis hung, miss", measure(client_a, new, "MISS", check)))
            finally:
                redis_server.resume()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_dir", type=Path, default=Path("model"))
    parser.add_argument("--requests", type=int, default=2000, help="Requests per scenario.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cache-latency-") as work:
        print("\n".join(run(args.model_dir, args.requests, Path(work))))


if __name__ == "__main__":
    main()
