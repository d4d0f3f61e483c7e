"""The shared tier on a Redis Cluster and on a Sentinel-managed master, with real failovers.

Real engines on loopback free ports (tests/redis_topologies.py): a cluster of three
masters with a replica each, and a master with a replica watched by three sentinels.
The server runs as a subprocess and is loaded by a few client threads; a master is
SIGKILLed meanwhile. No request may fail, and the tier must come back: rows written after
the failover are hits for a new server process.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.server import ServerProcess, start_server
from predictor.cache.keys import cache_key, canonical_rows, row_digests
from predictor.model.artifact import METADATA_NAME
from predictor.protocol.schema import FEATURES
from tests.redis_topologies import (
    CLUSTER_NODE_TIMEOUT_MS,
    SENTINEL_DOWN_AFTER_MS,
    Cluster,
    SentinelSet,
    running_cluster,
    running_sentinels,
)

FLAGS = ["--redis_timeout_ms", "50", "--redis_breaker_failures", "3"]
FLAGS += ["--redis_breaker_cooldown_seconds", "0.3"]
Row = dict[str, float]
_ids = itertools.count()


def fresh_rows(n: int) -> list[Row]:
    return [
        {"MedInc": 3.5, "HouseAge": 20.0, "AveRooms": 5.0, "AveBedrms": 1.0,
         "Population": 7_000_000.0 + next(_ids), "AveOccup": 2.5, "Latitude": 36.5,
         "Longitude": -120.5}
        for _ in range(n)
    ]  # fmt: skip


def predict(server: ServerProcess, rows: list[Row]) -> str:
    response = httpx.post(f"{server.base_url}/predict", json=rows, timeout=30.0)
    assert response.status_code == 200, response.text
    return response.headers["x-cache"]


def metric(server: ServerProcess, name: str, **labels: str) -> float:
    text = httpx.get(f"{server.base_url}/metrics", timeout=30.0).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def keys_of(model_dir: Path, rows: list[Row]) -> list[str]:
    version = json.loads((model_dir / METADATA_NAME).read_text())["model_version"]
    matrix = np.array([[row[f] for f in FEATURES] for row in rows])
    return [cache_key("housing", version[:16], d) for d in row_digests(canonical_rows(matrix))]


def eventually(check: Callable[[], bool], timeout: float = 20.0) -> float:
    """Seconds until `check()` holds."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, "condition not met in time"
        time.sleep(0.05)
    return time.monotonic() - started


def holds_within(check: Callable[[], bool], seconds: float) -> bool:
    """Whether `check()` holds at some point within `seconds`."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def until_written(
    server: ServerProcess, model_dir: Path, count_stored: Callable[[list[str]], int]
) -> tuple[float, list[Row]]:
    """Seconds until rows the server predicts reach Redis again, and those rows.

    Each attempt predicts rows never seen: a row whose write was dropped while Redis was
    away stays in the in-process tier, is a local hit from then on and is never written
    again, so asking for it again would prove nothing.
    """
    started = time.monotonic()
    while True:
        rows = fresh_rows(10)
        assert predict(server, rows) == "MISS"
        keys = keys_of(model_dir, rows)
        if holds_within(lambda k=keys: count_stored(k) == len(k), seconds=0.5):
            return time.monotonic() - started, rows
        assert time.monotonic() - started < 30, "the tier did not come back in 30 s"


class Load:
    """Client threads sending fresh rows until stopped; every status they got."""

    def __init__(self, server: ServerProcess, clients: int = 4) -> None:
        self._server = server
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(clients)
        self._futures = [self._pool.submit(self._client) for _ in range(clients)]

    def _client(self) -> list[int]:
        statuses = []
        with httpx.Client(base_url=self._server.base_url, timeout=30) as client:
            while not self._stop.is_set():
                statuses.append(client.post("/predict", json=fresh_rows(3)).status_code)
        return statuses

    def stop(self) -> list[int]:
        self._stop.set()
        statuses = [s for future in self._futures for s in future.result()]
        self._pool.shutdown()
        return statuses


@pytest.fixture()
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(tmp_path) as running:
        yield running


@pytest.fixture()
def sentinels(tmp_path: Path) -> Iterator[SentinelSet]:
    with running_sentinels(tmp_path) as running:
        yield running


def test_cluster_rows_cached_by_one_process_are_hits_for_the_next(
    cluster: Cluster, model_dir: Path
) -> None:
    args = ["--model_dir", str(model_dir), "--redis_url", cluster.url]
    args += ["--redis_cluster", "true", *FLAGS]
    rows = fresh_rows(40)
    keys = keys_of(model_dir, rows)
    with start_server(args) as first:
        assert predict(first, rows) == "MISS"  # one request, keys on many slots
        client = cluster.client()
        eventually(lambda: client.exists(*keys) == len(keys))
    shards = []
    for master in cluster.masters():
        with master.client() as shard:
            shards.append(shard.dbsize())
    assert sum(shards) == len(keys) and all(n > 0 for n in shards)  # spread over 3 shards
    with start_server(args) as second:
        assert predict(second, rows) == "HIT"
        assert metric(second, "housing_cache_hits_total", tier="redis") == len(rows)
        assert metric(second, "housing_redis_errors_total") == 0


def test_cluster_master_killed_under_load(cluster: Cluster, model_dir: Path) -> None:
    args = ["--model_dir", str(model_dir), "--redis_url", cluster.url]
    args += ["--redis_cluster", "true", *FLAGS]
    with start_server(args) as server:
        load = Load(server)
        time.sleep(1.0)
        victim = cluster.masters()[0]
        victim.kill()
        killed = time.monotonic()
        failover = eventually(cluster.healthy, timeout=30)
        time.sleep(1.0)  # load goes on past the failover
        statuses = load.stop()
        assert statuses and set(statuses) == {200}
        # The tier is back: rows written now are in the cluster and hits for a new process.
        client = cluster.client()
        back, rows = until_written(server, model_dir, lambda keys: int(client.exists(*keys)))
    total = time.monotonic() - killed
    print(f"cluster: failover {failover:.1f} s after the kill, tier back {back:.1f} s later "
          f"({total:.1f} s in all); node timeout {CLUSTER_NODE_TIMEOUT_MS} ms")  # fmt: skip
    args[args.index("--redis_url") + 1] = cluster.url  # the first one may be the victim
    with start_server(args) as fresh:
        assert predict(fresh, rows) == "HIT"


def test_sentinel_master_killed_under_load(sentinels: SentinelSet, model_dir: Path) -> None:
    args = ["--model_dir", str(model_dir), "--redis_url", sentinels.url, *FLAGS]
    with start_server(args) as server:
        rows = fresh_rows(10)
        assert predict(server, rows) == "MISS"
        with sentinels.master.client() as master:
            eventually(lambda: master.exists(*keys_of(model_dir, rows)) == len(rows))
        load = Load(server)
        time.sleep(1.0)
        sentinels.master.kill()
        killed = time.monotonic()
        # A sentinel that was not scheduled for 2 s (a loaded machine) enters TILT mode and
        # does nothing for 30 s: the promotion itself is given that long.
        promoted = eventually(
            lambda: sentinels.current_master_port() == sentinels.replica.port, timeout=90
        )

        def stored(keys: list[str]) -> int:
            with sentinels.replica.client() as new_master:
                return int(new_master.exists(*keys))

        back, fresh = until_written(server, model_dir, stored)
        statuses = load.stop()
        assert statuses and set(statuses) == {200}
    print(f"sentinel: replica promoted {promoted:.1f} s after the kill, tier back "
          f"{back:.1f} s later ({time.monotonic() - killed:.1f} s in all); "
          f"down-after {SENTINEL_DOWN_AFTER_MS} ms")  # fmt: skip
    with start_server(args) as second:
        assert predict(second, fresh) == "HIT"
