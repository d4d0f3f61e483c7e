"""The Redis breaker under concurrent load, with a real redis-server behind a delaying proxy.

A healthy Redis never moves the breaker, however many operations run at once; one whose
replies are sometimes late (past the timeout) opens it at most once per cool-down, and
the late successes of operations that started before an opening do not close it again.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY

from harness.cache_settings import cache_settings
from harness.redis_server import RedisServer, running_redis
from harness.server import start_server
from predictor.cache.redis_tier import RedisCache
from tests.delaying_proxy import delaying_proxy

TIMEOUT = 0.05
COOLDOWN = 0.5
# Every reply waits up to 3 timeouts: two in three arrive too late, one in time but late
# (what, before, closed an opened breaker again: 19 openings in 5 s). Every reply, not every
# 3rd as when each request had its own round trip: the requests' lookups now share
# exchanges on one connection, so one late reply fails one exchange for all of them, and
# with successes in between the breaker (counting consecutive failures) stays closed.
DELAY_EVERY = 1
DELAY = 3 * TIMEOUT


@pytest.fixture()
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as server:
        yield server


def changes(state: str) -> float:
    return REGISTRY.get_sample_value("housing_redis_breaker_changes_total", {"state": state}) or 0


async def hammer(cache: RedisCache, workers: int, seconds: float) -> int:
    """`workers` concurrent loops of lookup + insert of fresh keys for `seconds`."""
    deadline = time.monotonic() + seconds
    done = 0

    async def worker(n: int) -> None:
        nonlocal done
        i = 0
        while time.monotonic() < deadline:
            key = f"t:{n}:{i}"
            await cache.lookup([key])
            await cache.insert({key: 1.5})
            i += 1
            done += 1
            await asyncio.sleep(0)

    await asyncio.gather(*(worker(n) for n in range(workers)))
    return done


def run_hammer(
    url: str, workers: int, seconds: float, timeout: float = TIMEOUT
) -> tuple[int, float, float]:
    """Operations done, and breaker openings and closings meanwhile."""
    opened, closed = changes("open"), changes("closed")

    async def scenario() -> int:
        cache = RedisCache(
            cache_settings(
                url,
                redis_timeout_seconds=timeout,
                redis_breaker_failures=3,
                redis_breaker_cooldown_seconds=COOLDOWN,
                redis_max_connections=64,
            )
        )
        await cache.start()
        try:
            return await hammer(cache, workers, seconds)
        finally:
            await cache.close()

    done = asyncio.run(scenario())
    return done, changes("open") - opened, changes("closed") - closed


def test_a_healthy_redis_never_moves_the_breaker_under_load(redis_server: RedisServer) -> None:
    # A timeout this busy test process always meets: only the outcomes' interleaving is tested.
    with delaying_proxy(redis_server.port) as proxy:
        done, opened, closed = run_hammer(proxy.url, workers=64, seconds=1.0, timeout=2.0)
    assert done > 100
    assert (opened, closed) == (0, 0)


def test_late_replies_open_the_breaker_at_most_once_per_cooldown(
    redis_server: RedisServer,
) -> None:
    seconds = 2.0
    with delaying_proxy(redis_server.port, DELAY_EVERY, DELAY) as proxy:
        done, opened, closed = run_hammer(proxy.url, workers=64, seconds=seconds)
        delayed = proxy.delayed
    assert done > 0 and delayed > 0
    assert opened >= 1  # the proxy did make Redis look sick
    # Each opening lasts a whole cool-down before a probe may close it.
    assert opened <= math.ceil(seconds / COOLDOWN) + 1
    assert closed <= opened


def test_server_under_load_answers_everything_and_the_breaker_does_not_flap(
    redis_server: RedisServer, model_dir: Path, sample: list[dict[str, float]]
) -> None:
    seconds = 3.0
    with delaying_proxy(redis_server.port, DELAY_EVERY, DELAY) as proxy:
        args = ["--model_dir", str(model_dir), "--redis_url", proxy.url]
        args += ["--redis_timeout_ms", str(TIMEOUT * 1000), "--redis_breaker_failures", "3"]
        args += ["--redis_breaker_cooldown_seconds", str(COOLDOWN)]
        with start_server(args) as server:
            deadline = time.monotonic() + seconds

            def client(n: int) -> list[int]:
                statuses = []
                with httpx.Client(base_url=server.base_url, timeout=30) as c:
                    i = 0
                    while time.monotonic() < deadline:
                        row = {**sample[0], "Population": 10_000.0 + n * 100_000 + i}
                        statuses.append(c.post("/predict", json=[row]).status_code)
                        i += 1
                return statuses

            with ThreadPoolExecutor(16) as pool:
                statuses = [s for result in pool.map(client, range(16)) for s in result]
            metrics = httpx.get(f"{server.base_url}/metrics", timeout=10).text
            log = server.log()
    assert statuses and set(statuses) == {200}
    opened = _metric(metrics, 'housing_redis_breaker_changes_total{state="open"}')
    assert opened >= 1
    assert opened <= math.ceil(seconds / COOLDOWN) + 2  # + the start-up's few hundred ms
    # One warning per closed → open change; failed probes (half-open → open) stay quiet.
    closed = _metric(metrics, 'housing_redis_breaker_changes_total{state="closed"}')
    assert 1 <= log.count("unavailable") <= closed + 1


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def test_a_saturated_server_with_a_healthy_redis_never_skips_it(
    redis_server: RedisServer, model_dir: Path, sample: list[dict[str, float]]
) -> None:
    """Saturating load on 2 cores (one-row requests, and batches that keep the event loop
    busy for milliseconds at a time) with a healthy Redis: no Redis timeout, no opening,
    no skipped operation. Before, the loop's own stalls expired lookups that Redis had
    answered in time, and the breaker turned the shared tier off."""
    seconds = 4.0
    args = ["--model_dir", str(model_dir), "--redis_url", redis_server.url]
    args += ["--redis_breaker_failures", "3", "--redis_breaker_cooldown_seconds", "5"]
    args += ["--response_cache_size", "0"]
    with start_server(args) as server:
        deadline = time.monotonic() + seconds

        def client(n: int) -> list[int]:
            rows = 300 if n % 4 == 0 else 1  # a quarter of the clients send batches
            statuses = []
            with httpx.Client(base_url=server.base_url, timeout=30) as c:
                i = 0
                while time.monotonic() < deadline:
                    body = [
                        {**sample[0], "Population": 20_000.0 + n * 1_000_000 + i * rows + k}
                        for k in range(rows)
                    ]
                    statuses.append(c.post("/predict", json=body).status_code)
                    i += 1
            return statuses

        with ThreadPoolExecutor(16) as pool:
            statuses = [s for result in pool.map(client, range(16)) for s in result]
        metrics = httpx.get(f"{server.base_url}/metrics", timeout=10).text
    assert len(statuses) >= 16 and set(statuses) == {200}
    assert _metric(metrics, 'housing_redis_seconds_count{operation="mget"}') > 0
    for operation in ("mget", "set"):
        assert _metric(metrics, f'housing_redis_skipped_total{{operation="{operation}"}}') == 0
        timeouts = f'housing_redis_errors_total{{kind="timeout",operation="{operation}"}}'
        assert _metric(metrics, timeouts) == 0
    assert _metric(metrics, 'housing_redis_breaker_changes_total{state="open"}') == 0
