"""The Redis cache end to end: `python -m predictor --redis_url ...` against real Redis servers.

Servers that share one healthy Redis serve the tests that only read and write through it;
each test that breaks Redis (kill, pause, restart, wrong password) starts its own.
Predictions are checked against the session's server without Redis (same model).
"""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.payloads import distinct_rows
from harness.redis_server import RedisServer, running_redis
from harness.server import ServerProcess, spawn_server, start_server
from predictor.cache.keys import cache_key, canonical_rows, row_digests
from predictor.model.artifact import METADATA_NAME, load_artifact, save_artifact
from predictor.protocol.schema import FEATURES

TIMEOUT_MS = 50
# A bound on one request's wall time while Redis is dead or hung: the Redis timeout plus a
# margin generous enough for a busy CI machine. Not a speed claim.
MARGIN_SECONDS = 2.0
COOLDOWN_SECONDS = 0.5
# The response memo would answer exact repeats before any cache tier: these tests are
# about the tiers, so it is off.
REDIS_FLAGS = [
    "--response_cache_size", "0",
    "--redis_timeout_ms", str(TIMEOUT_MS),
    "--redis_breaker_failures", "2",
    "--redis_breaker_cooldown_seconds", str(COOLDOWN_SECONDS),
]  # fmt: skip
PASSWORD = "correct-horse-battery-staple"
OPEN, CLOSED = 2.0, 0.0

Row = dict[str, float]
_row_ids = itertools.count()


def fresh_rows(n: int) -> list[Row]:
    """Rows no earlier test of this module has sent (unique populations)."""
    return [row for k in itertools.islice(_row_ids, n) for row in distinct_rows(k, 1)]


def predict(server: ServerProcess, rows: list[Any]) -> tuple[str, list[float]]:
    """POST /predict; the X-Cache header and the predictions."""
    response = httpx.post(f"{server.base_url}/predict", json=rows, timeout=30.0)
    assert response.status_code == 200, response.text
    return response.headers["x-cache"], response.json()["prediction"]


def metric(server: ServerProcess, name: str, **labels: str) -> float:
    text = httpx.get(f"{server.base_url}/metrics", timeout=30.0).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def redis_keys(model_dir: Path, rows: list[Row]) -> list[str]:
    """The cache keys a server of this model uses for these rows."""
    version = json.loads((model_dir / METADATA_NAME).read_text())["model_version"]
    matrix = np.array([[float(row[f]) for f in FEATURES] for row in rows])
    return [cache_key("housing", version[:16], d) for d in row_digests(canonical_rows(matrix))]


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def wait_for_keys(redis: RedisServer, keys: list[str]) -> None:
    """Writes to Redis happen in the background, after the response."""
    with redis.client() as client:
        eventually(lambda: client.exists(*keys) == len(keys))


@pytest.fixture(scope="module")
def oracle(server: ServerProcess) -> Callable[[list[Row]], list[float]]:
    """Predictions of the same model from the session's server without Redis."""

    def expected(rows: list[Row]) -> list[float]:
        response = httpx.post(
            f"{server.base_url}/v1/models/housing:predict", json={"instances": rows}, timeout=30
        )
        assert response.status_code == 200, response.text
        predictions: list[float] = response.json()["predictions"]
        return predictions

    return expected


@pytest.fixture(scope="module")
def shared_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis")) as redis:
        yield redis


@pytest.fixture(scope="module")
def pair(model_dir: Path, shared_redis: RedisServer) -> Iterator[list[ServerProcess]]:
    """Two server processes sharing one Redis, as two replicas would."""
    args = ["--model_dir", str(model_dir), "--redis_url", shared_redis.url, *REDIS_FLAGS]
    servers = [spawn_server(args), spawn_server(args)]
    try:
        for server in servers:
            server.wait_ready()
        yield servers
    finally:
        for server in servers:
            server.stop()
            server.log_path.unlink(missing_ok=True)


@pytest.fixture()
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as redis:
        yield redis


# -- through a healthy shared Redis ---------------------------------------------------------


def test_miss_then_hit_within_and_across_processes(
    pair: list[ServerProcess],
    shared_redis: RedisServer,
    model_dir: Path,
    oracle: Callable[[list[Row]], list[float]],
) -> None:
    a, b = pair
    rows = fresh_rows(3)
    assert predict(a, rows) == ("MISS", oracle(rows))
    assert predict(a, rows) == ("HIT", oracle(rows))
    wait_for_keys(shared_redis, redis_keys(model_dir, rows))
    redis_hits = metric(b, "housing_cache_hits_total", tier="redis")
    assert predict(b, rows) == ("HIT", oracle(rows))
    assert metric(b, "housing_cache_hits_total", tier="redis") == redis_hits + 3


def test_partial_hits_merge_in_request_order(
    pair: list[ServerProcess], oracle: Callable[[list[Row]], list[float]]
) -> None:
    a, _ = pair
    r1, r2, r3, r4 = rows = fresh_rows(4)
    expected = oracle(rows)
    assert predict(a, [r2, r4]) == ("MISS", [expected[1], expected[3]])
    assert predict(a, rows) == ("PARTIAL", expected)
    assert predict(a, [r4, r3, r2, r1]) == ("HIT", expected[::-1])


def test_one_key_per_row_whatever_its_form(
    pair: list[ServerProcess], shared_redis: RedisServer, model_dir: Path
) -> None:
    a, b = pair
    [row] = fresh_rows(1)
    status, [value] = predict(a, [row])
    assert status == "MISS"
    [key] = redis_keys(model_dir, [row])
    wait_for_keys(shared_redis, [key])
    with shared_redis.client() as client:
        keys_before = client.dbsize()
    reordered = {name: row[name] for name in reversed(FEATURES)} | {"note": "extra"}
    as_ints = {k: int(v) if float(v).is_integer() else v for k, v in row.items()}
    assert any(isinstance(v, int) for v in as_ints.values())  # sent as `7`, not `7.0`
    ordered = [row[f] for f in FEATURES]
    for server in (a, b):  # b has never seen the row: its hits come from Redis
        assert predict(server, [reordered]) == ("HIT", [value])
        assert predict(server, [as_ints]) == ("HIT", [value])
        v1 = httpx.post(
            f"{server.base_url}/v1/models/housing:predict", json={"instances": [ordered]}
        )
        assert (v1.headers["x-cache"], v1.json()["predictions"]) == ("HIT", [value])
        for datatype in ("FP64", "FP32"):
            tensor = {"name": "input-0", "datatype": datatype, "shape": [1, 8], "data": ordered}
            v2 = httpx.post(f"{server.base_url}/v2/models/housing/infer", json={"inputs": [tensor]})
            assert v2.headers["x-cache"] == "HIT"
            assert v2.json()["outputs"][0]["data"] == [value]
    with shared_redis.client() as client:
        assert client.dbsize() == keys_before  # no new entry for any of those forms


def test_concurrent_identical_misses_run_the_model_once(
    pair: list[ServerProcess], oracle: Callable[[list[Row]], list[float]]
) -> None:
    a, _ = pair
    rows = fresh_rows(20)
    predicted = metric(a, "housing_rows_predicted_total")
    start = threading.Barrier(16)

    def send() -> tuple[str, list[float]]:
        start.wait()
        return predict(a, rows)

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: send(), range(16)))
    assert metric(a, "housing_rows_predicted_total") == predicted + 20
    assert {status for status, _ in answers} <= {"MISS", "HIT"}
    assert all(values == oracle(rows) for _, values in answers)


@pytest.fixture(scope="module")
def other_model_dir(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same estimator saved with an inert parameter changed: a new model version."""
    artifact = load_artifact(model_dir)
    artifact.estimator.set_params(verbose=1)  # used by fit only
    metadata = {k: v for k, v in artifact.metadata.items() if k != "model_version"}
    directory = tmp_path_factory.mktemp("other-model")
    save_artifact(directory, artifact.estimator, metadata)
    return directory


def test_a_new_model_version_misses(
    pair: list[ServerProcess], shared_redis: RedisServer, model_dir: Path, other_model_dir: Path
) -> None:
    a, _ = pair
    rows = fresh_rows(2)
    assert predict(a, rows)[0] == "MISS"
    wait_for_keys(shared_redis, redis_keys(model_dir, rows))
    args = ["--model_dir", str(other_model_dir), "--redis_url", shared_redis.url]
    with start_server([*args, *REDIS_FLAGS]) as new:
        new_keys = redis_keys(other_model_dir, rows)
        assert set(new_keys).isdisjoint(redis_keys(model_dir, rows))
        assert predict(new, rows)[0] == "MISS"
        wait_for_keys(shared_redis, new_keys)
        assert predict(new, rows)[0] == "HIT"


# -- Redis breaking under the servers -------------------------------------------------------


def test_breaker_opens_then_closes_and_hits_resume_after_a_restart(
    model_dir: Path, private_redis: RedisServer, oracle: Callable[[list[Row]], list[float]]
) -> None:
    # A one-entry local tier, so that Redis answers whatever the last request did not ask.
    args = ["--model_dir", str(model_dir), "--redis_url", private_redis.url, "--cache_size", "1"]
    # A cool-down long enough that a stalled test process still finds the breaker open.
    cooldown = 3.0
    with start_server(
        [*args, *REDIS_FLAGS, "--redis_breaker_cooldown_seconds", str(cooldown)]
    ) as server:
        rows = fresh_rows(8)
        expected = oracle(rows)
        assert predict(server, rows[0:1]) == ("MISS", expected[0:1])
        private_redis.kill()
        for i in (1, 2, 3):
            assert predict(server, rows[i : i + 1]) == ("MISS", expected[i : i + 1])
        assert metric(server, "housing_redis_breaker_state") == OPEN
        skipped = metric(server, "housing_redis_skipped_total", operation="mget")
        assert predict(server, rows[4:5]) == ("MISS", expected[4:5])
        assert metric(server, "housing_redis_skipped_total", operation="mget") > skipped

        private_redis.start()  # same port, empty
        time.sleep(cooldown)
        # The first request after the cool-down probes Redis; on a busy machine a probe may
        # miss its deadline and open the breaker again, so fresh rows are sent until it closes.
        probes = iter(fresh_rows(200))

        def probed() -> bool:
            row = next(probes)
            assert predict(server, [row]) == ("MISS", oracle([row]))
            return metric(server, "housing_redis_breaker_state") == CLOSED

        eventually(probed, timeout=30)
        assert predict(server, rows[5:6]) == ("MISS", expected[5:6])
        wait_for_keys(private_redis, redis_keys(model_dir, rows[5:6]))
        assert predict(server, rows[6:7]) == ("MISS", expected[6:7])  # evicts row 5 locally
        redis_hits = metric(server, "housing_cache_hits_total", tier="redis")
        assert predict(server, rows[5:6]) == ("HIT", expected[5:6])
        assert metric(server, "housing_cache_hits_total", tier="redis") == redis_hits + 1
        log = server.log()
    assert f"Redis at {private_redis.url} unavailable" in log
    assert f"Redis at {private_redis.url} answers again" in log


@pytest.mark.parametrize("failure", ["kill", "pause"])
def test_every_request_is_answered_while_redis_dies_under_load(
    failure: str,
    model_dir: Path,
    private_redis: RedisServer,
    oracle: Callable[[list[Row]], list[float]],
) -> None:
    rows = fresh_rows(1500)
    expected = oracle(rows[:750]) + oracle(rows[750:])
    args = ["--model_dir", str(model_dir), "--redis_url", private_redis.url, "--cache_size", "50"]
    results: list[tuple[float, float, int, float]] = []  # start, wall time, row, answer
    stop = threading.Event()
    next_row = itertools.count()

    def load(server: ServerProcess) -> None:
        with httpx.Client(base_url=server.base_url, timeout=30.0) as client:
            while not stop.is_set():
                # two new rows in three; the third one was sent before (Redis or local hit)
                i = next(next_row) % len(rows)
                if i % 3 == 0:
                    i //= 3
                started = time.monotonic()
                response = client.post("/predict", json=[rows[i]])
                wall = time.monotonic() - started
                assert response.status_code == 200, response.text
                results.append((started, wall, i, response.json()["prediction"][0]))

    with (
        start_server([*args, *REDIS_FLAGS]) as server,
        concurrent.futures.ThreadPoolExecutor(6) as pool,
    ):
        workers = [pool.submit(load, server) for _ in range(6)]
        time.sleep(1.0)
        broken_at = time.monotonic()
        getattr(private_redis, failure)()
        try:
            time.sleep(2.0)
            stop.set()
            for worker in workers:
                worker.result()
            state = metric(server, "housing_redis_breaker_state")
            kind = "connection" if failure == "kill" else "timeout"
            errors = metric(server, "housing_redis_errors_total", operation="mget", kind=kind)
        finally:
            if failure == "pause":
                private_redis.resume()

    assert len([r for r in results if r[0] > broken_at]) >= 20, "too little load after the break"
    for _, wall, i, answer in results:
        assert answer == expected[i], f"row {i} answered {answer}, expected {expected[i]}"
        assert wall < TIMEOUT_MS / 1000 + MARGIN_SECONDS, f"a request took {wall:.3f} s"
    assert state in (OPEN, 1.0)  # open, or half-open while a probe is out
    assert errors > 0


# -- start-up with Redis unusable -----------------------------------------------------------


def test_wrong_password_at_start_up_serves_and_never_logs_a_password(
    model_dir: Path, tmp_path: Path
) -> None:
    wrong = "not-the-" + PASSWORD
    with running_redis(tmp_path, password=PASSWORD) as redis:
        bad_url = f"redis://:{wrong}@127.0.0.1:{redis.port}/0"
        base = ["--model_dir", str(model_dir), *REDIS_FLAGS]
        rows = fresh_rows(1)
        with start_server([*base, "--redis_url", bad_url]) as refused:
            assert predict(refused, rows)[0] == "MISS"
            assert predict(refused, rows)[0] == "HIT"  # the in-process tier
            refused_log = refused.log()
            metrics_page = httpx.get(f"{refused.base_url}/metrics").text
        env = {"REDIS_URL": redis.url, "REDIS_PASSWORD": PASSWORD}
        with start_server(base, env=env) as accepted:
            assert predict(accepted, rows)[0] == "MISS"
            wait_for_keys(redis, redis_keys(model_dir, rows))
            accepted_log = accepted.log()
    masked = f"redis://:***@127.0.0.1:{redis.port}/0"
    assert f"Redis at {masked} unavailable (AuthenticationError" in refused_log
    assert f"Using Redis at {redis.url} as the shared cache tier" in accepted_log
    for text in (refused_log, accepted_log, metrics_page):
        assert PASSWORD not in text and wrong not in text


def test_unreachable_redis_at_start_up_serves_from_the_model(
    model_dir: Path, oracle: Callable[[list[Row]], list[float]]
) -> None:
    url = "redis://192.0.2.1:6379/0"  # TEST-NET-1: routed nowhere
    rows = fresh_rows(2)
    with start_server(["--model_dir", str(model_dir), "--redis_url", url, *REDIS_FLAGS]) as s:
        started = time.monotonic()
        assert predict(s, rows) == ("MISS", oracle(rows))
        assert time.monotonic() - started < TIMEOUT_MS / 1000 + MARGIN_SECONDS
        assert predict(s, rows) == ("HIT", oracle(rows))
        log = s.log()
    assert f"Redis at {url} unavailable" in log
    assert "serving from the in-process cache until it returns" in log


SIGNING_KEY = "0123456789abcdef0123456789abcdef"


def test_a_hand_written_value_is_served_only_without_a_signing_key(
    model_dir: Path, private_redis: RedisServer, oracle: Callable[[list[Row]], list[float]]
) -> None:
    """`SET <key> 0.5` by hand: without --cache_signing_key whoever can write to Redis decides
    the answer; with it, the value is a miss counted as `bad_value`, and the model answers."""
    rows = fresh_rows(1)
    (key,) = redis_keys(model_dir, rows)
    args = ["--model_dir", str(model_dir), "--redis_url", private_redis.url, *REDIS_FLAGS]
    with private_redis.client() as client:
        client.set(key, b"0.5")
        with start_server(args) as unsigned:
            assert predict(unsigned, rows) == ("HIT", [0.5])
        client.set(key, b"0.5")
        with start_server([*args, "--cache_signing_key", SIGNING_KEY]) as signed:
            assert predict(signed, rows) == ("MISS", oracle(rows))
            assert metric(signed, "housing_redis_errors_total", kind="bad_value") == 1
            eventually(lambda: client.get(key) != b"0.5")  # the model's answer, signed
            stored = client.get(key)
        env = {"CACHE_SIGNING_KEY": SIGNING_KEY}
        with start_server(args, env=env) as same_key:
            assert predict(same_key, rows) == ("HIT", oracle(rows))
        with start_server([*args, "--cache_signing_key", "another-key-0123456789"]) as other:
            assert predict(other, rows) == ("MISS", oracle(rows))
    assert stored is not None and stored.startswith(repr(oracle(rows)[0]).encode() + b"|")


@pytest.mark.parametrize("policy", ["auto", "never"])
def test_the_redis_policy_is_judged_at_start_up_and_obeyed(
    policy: str, model_dir: Path, private_redis: RedisServer
) -> None:
    """`auto` consults Redis only when the model, timed at start-up, costs more per row than
    a Redis round trip (logged and exported); `never` does not touch Redis at all."""
    args = ["--model_dir", str(model_dir), "--redis_url", private_redis.url, *REDIS_FLAGS]
    with start_server([*args, "--redis_policy", policy]) as server:
        rows = fresh_rows(5)
        assert predict(server, rows)[0] == "MISS"
        time.sleep(0.2)  # past the background write, if any
        pays = metric(server, "housing_redis_pays")
        row_seconds = metric(server, "housing_model_row_seconds")
        round_trip = metric(server, "housing_redis_round_trip_seconds")
        log = server.log()
    with private_redis.client() as client:
        written = client.dbsize()
    if policy == "never":
        assert written == 0 and "Model costs" not in log
        return
    assert row_seconds > 0 and round_trip > 0 and pays == float(row_seconds > round_trip)
    assert f"(policy auto: {'consulting Redis' if pays else 'in-process cache only'})" in log
    assert written == (len(rows) if pays else 0)
