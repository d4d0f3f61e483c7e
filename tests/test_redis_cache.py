"""The Redis tier, the tiered cache and the circuit breaker, in-process against real servers.

Every test that touches Redis starts its own `redis-server` (harness/redis_server.py); the
breaker's state machine is pure logic and runs on a fake clock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvloop
from prometheus_client import REGISTRY

from harness.cache_settings import cache_settings
from harness.redis_server import RedisServer, running_redis
from predictor.cache.breaker import BreakerState, CircuitBreaker
from predictor.cache.redis_policy import consult_redis
from predictor.cache.redis_tier import WRITE_DELAY_SECONDS, RedisCache
from predictor.cache.tiers import LocalCache, TieredCache
from predictor.cache.urls import masked_url
from tests.delaying_proxy import delaying_proxy

TIMEOUT = 0.05
# A bound on one call's wall time when Redis is dead or hung: the timeout plus a margin
# generous enough for a busy CI machine. Not a speed claim.
MARGIN = 2.0
PASSWORD = "correct-horse-battery-staple"
T = TypeVar("T")


@pytest.fixture()
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as server:
        yield server


def redis_cache(url: str, **options: object) -> RedisCache:
    settings: dict[str, object] = {
        "redis_timeout_seconds": TIMEOUT,
        "redis_ttl_seconds": 60.0,
        "redis_ttl_jitter": 0.0,
        "redis_breaker_failures": 2,
        "redis_breaker_cooldown_seconds": 0.3,
    }
    settings.update(options)
    return RedisCache(cache_settings(url, **settings))


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def flushed(cache: RedisCache) -> None:
    """Wait for the writes queued so far: their exchange starts, then ends."""
    await asyncio.sleep(2 * WRITE_DELAY_SECONDS)
    await asyncio.gather(*cache._exchanges, return_exceptions=True)


# -- the circuit breaker, on a fake clock ----------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def recording_breaker(failures: int, clock: FakeClock) -> tuple[CircuitBreaker, list[BreakerState]]:
    """A breaker with a 5 s cool-down, and the list of states it moves to."""
    states: list[BreakerState] = []
    breaker = CircuitBreaker(
        failures, 5.0, on_change=lambda _, new: states.append(new), clock=clock
    )
    return breaker, states


def test_breaker_opens_after_consecutive_failures_and_skips_until_cooldown() -> None:
    clock = FakeClock()
    breaker, states = recording_breaker(3, clock)
    ticket = breaker.allow()
    assert ticket is not None
    breaker.failed(ticket)
    breaker.failed(ticket)
    breaker.succeeded(ticket)  # a success in between resets the count
    breaker.failed(ticket)
    breaker.failed(ticket)
    assert states == [] and breaker.allow() is not None
    breaker.failed(ticket)
    assert states == [BreakerState.OPEN]
    clock.now += 4.9
    assert breaker.allow() is None


def test_breaker_lets_one_probe_through_then_closes_on_success() -> None:
    clock = FakeClock()
    breaker, states = recording_breaker(1, clock)
    breaker.trip()
    clock.now += 5.0
    probe = breaker.allow()
    assert probe is not None
    assert breaker.allow() is None  # only one at a time
    breaker.succeeded(probe)
    assert breaker.allow() is not None
    assert states == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]


def test_breaker_reopens_on_failed_probe_and_survives_a_lost_probe() -> None:
    clock = FakeClock()
    breaker, states = recording_breaker(1, clock)
    breaker.trip()
    clock.now += 5.0
    probe = breaker.allow()
    assert probe is not None
    breaker.failed(probe)
    assert states == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.OPEN]
    clock.now += 4.0
    assert breaker.allow() is None
    clock.now += 1.0
    lost = breaker.allow()  # this probe never reports back in time (its request was cancelled)
    assert lost is not None
    clock.now += 4.9
    assert breaker.allow() is None
    clock.now += 0.1
    probe = breaker.allow()  # another cool-down later, the next call probes
    assert probe is not None and breaker.state is BreakerState.HALF_OPEN
    breaker.succeeded(lost)  # too late: the probe that replaced it decides
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.failed(probe)
    assert breaker.state is BreakerState.OPEN


def test_only_outcomes_of_the_current_state_move_the_breaker() -> None:
    clock = FakeClock()
    breaker, states = recording_breaker(3, clock)
    # 100 calls start while closed; Redis hangs and they all fail at once, while a few that
    # started with them succeed late: one opening, and no closing until a probe succeeds.
    tickets = [breaker.allow() for _ in range(100)]
    assert all(t is not None for t in tickets)
    for i, ticket in enumerate(tickets):
        assert ticket is not None
        if i % 10 == 9:
            breaker.succeeded(ticket)
        else:
            breaker.failed(ticket)
    assert states == [BreakerState.OPEN]
    clock.now += 5.0
    probe = breaker.allow()
    assert probe is not None
    breaker.failed(tickets[0])  # an old failure does not decide the probe's epoch
    breaker.succeeded(tickets[1])  # nor an old success
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.succeeded(probe)
    assert states == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]
    breaker.failed(tickets[2])  # from before the opening: ignored
    breaker.failed(tickets[3])
    breaker.failed(tickets[4])
    assert breaker.state is BreakerState.CLOSED


# -- the Redis tier against a private redis-server -------------------------------------------


def test_lookup_misses_then_hits_with_exact_values(redis_server: RedisServer) -> None:
    values = {f"t:v:{i}": 0.1 * i + 1e-17 * i for i in range(50)}
    values["t:v:tiny"] = 5e-324

    async def scenario() -> list[float | None]:
        cache = redis_cache(redis_server.url)
        await cache.start()
        assert await cache.lookup(list(values)) == [None] * len(values)
        await cache.insert(values)
        await flushed(cache)
        found = await cache.lookup([*values, "t:v:absent"])
        await cache.close()
        return found

    mget_before = sample("housing_redis_seconds_count", operation="mget")
    set_before = sample("housing_redis_seconds_count", operation="set")
    assert asyncio.run(scenario()) == [*values.values(), None]
    # one script call per lookup, one round trip per insert
    stats = redis_server.client().info("commandstats")
    assert stats["cmdstat_eval"]["calls"] == 2
    assert stats["cmdstat_set"]["calls"] == len(values)
    assert sample("housing_redis_seconds_count", operation="mget") - mget_before == 2
    assert sample("housing_redis_seconds_count", operation="set") - set_before == 1


def test_writes_carry_a_jittered_ttl_and_expire(redis_server: RedisServer) -> None:
    keys = [f"t:ttl:{i}" for i in range(200)]

    async def scenario() -> None:
        jittered = redis_cache(redis_server.url, redis_ttl_seconds=100.0, redis_ttl_jitter=0.2)
        await jittered.insert(dict.fromkeys(keys, 1.5))
        await flushed(jittered)
        await jittered.close()

    asyncio.run(scenario())
    client = redis_server.client()
    ttls = [client.pttl(key) for key in keys]
    assert all(79_000 <= ttl <= 120_000 for ttl in ttls)
    assert len(set(ttls)) > 10  # spread, not one expiry for the whole burst

    async def expiry() -> tuple[list[float | None], list[float | None]]:
        short = redis_cache(redis_server.url, redis_ttl_seconds=0.3)
        await short.insert({"t:short": 2.5})
        await flushed(short)
        before = await short.lookup(["t:short"])
        await asyncio.sleep(0.6)
        after = await short.lookup(["t:short"])
        await short.close()
        return before, after

    assert asyncio.run(expiry()) == ([2.5], [None])


def test_the_lookups_and_writes_of_one_tick_share_one_round_trip(
    redis_server: RedisServer,
) -> None:
    """Concurrent requests' Redis work is coalesced: one lookup call for all their keys,
    one exchange for all their writes, each request answered with its own slice."""
    redis_server.client().mset({"t:c:3": b"3.5", "t:c:7": b"7.5"})
    requests = [[f"t:c:{i}", f"t:c:{i}x"] for i in range(20)]

    async def scenario() -> list[list[float | None]]:
        cache = redis_cache(redis_server.url, redis_timeout_seconds=1.0)
        found = await asyncio.gather(*(cache.lookup(keys) for keys in requests))
        for i in range(20):  # 20 requests' writes, queued in one tick
            await cache.insert({f"t:w:{i}": float(i)})
        await flushed(cache)
        await cache.close()
        return found

    writes_before = sample("housing_redis_seconds_count", operation="set")
    found = asyncio.run(scenario())
    assert found[3] == [3.5, None] and found[7] == [7.5, None]
    assert all(found[i] == [None, None] for i in range(20) if i not in (3, 7))
    stats = redis_server.client().info("commandstats")
    assert stats["cmdstat_eval"]["calls"] == 1
    assert stats["cmdstat_set"]["calls"] == 20
    assert sample("housing_redis_seconds_count", operation="set") - writes_before == 1
    assert redis_server.client().get("t:w:19") == b"19.0"


def _run_on(loop_name: str, scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
    factory = uvloop.new_event_loop if loop_name == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(scenario())


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_a_stalled_event_loop_is_not_a_redis_timeout(
    redis_server: RedisServer, loop_name: str
) -> None:
    """The reply arrives in 5 ms (a proxy holds it back that long, so that it arrives while
    the loop is stalled) and the loop is stalled 4 timeouts long: a hit, no timeout
    counted, the breaker untouched (before: a timeout, and 1 failure of 1 opens it)."""
    redis_server.client().set("t:stall", b"2.5")

    async def scenario() -> tuple[list[float | None], BreakerState]:
        cache = redis_cache(proxy.url, redis_breaker_failures=1)
        assert await cache.lookup(["t:other"]) == [None]  # connected
        pending = asyncio.ensure_future(cache.lookup(["t:stall"]))
        for _ in range(5):  # the lookup is sent and waits for its reply
            await asyncio.sleep(0)
        time.sleep(4 * TIMEOUT)  # the loop is busy past the deadline
        found = await pending
        state = cache.breaker_state
        await cache.close()
        return found, state

    timeouts = sample("housing_redis_errors_total", operation="mget", kind="timeout")
    with delaying_proxy(redis_server.port, 1, 0.006, min_delay_seconds=0.005) as proxy:
        assert _run_on(loop_name, scenario) == ([2.5], BreakerState.CLOSED)
    assert sample("housing_redis_errors_total", operation="mget", kind="timeout") == timeouts


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_a_paused_redis_still_times_out_on_a_busy_loop(
    redis_server: RedisServer, loop_name: str
) -> None:
    """Redis itself stalled (CLIENT PAUSE): the lookup is given up on, counted as a timeout,
    and the breaker opens, even when the loop was also stalled."""

    async def scenario() -> tuple[list[float | None], BreakerState]:
        cache = redis_cache(redis_server.url, redis_breaker_failures=1)
        assert await cache.lookup(["t:a"]) == [None]  # connected
        redis_server.client().execute_command("CLIENT", "PAUSE", "2000", "ALL")
        pending = asyncio.ensure_future(cache.lookup(["t:a"]))
        for _ in range(5):
            await asyncio.sleep(0)
        time.sleep(2 * TIMEOUT)
        found = await pending
        state = cache.breaker_state
        redis_server.client().execute_command("CLIENT", "UNPAUSE")
        await cache.close()
        return found, state

    timeouts = sample("housing_redis_errors_total", operation="mget", kind="timeout")
    found, state = _run_on(loop_name, scenario)
    assert found == [None] and state is BreakerState.OPEN
    # Given up on at its deadline, not waited out: counted as a timeout (a lookup that
    # waited for the 2 s pause to end would have been answered, and counted nothing).
    assert sample("housing_redis_errors_total", operation="mget", kind="timeout") == timeouts + 1


# What the server writes (repr of a float), and values it never writes.
EXACT: dict[str, bytes] = {"t:ok": b"1.25", "t:big": b"1e+16", "t:tiny": b"5e-324"}
FOREIGN: dict[str, bytes] = {
    "t:text": b"not a number",
    "t:nan": b"nan",
    "t:inf": b"inf",
    "t:bin": b"\xff\xfe",
    "t:underscore": b"4_2",
    "t:spaces": b" 999.5 ",
    "t:int": b"42",
    "t:plus": b"+1.5",
    "t:zeros": b"1.250",
    "t:empty": b"",
    "t:huge": b"1" * 10_000_000,
}


def test_only_the_exact_form_written_is_a_hit(redis_server: RedisServer) -> None:
    client = redis_server.client()
    client.mset({**EXACT, **FOREIGN})
    client.rpush("t:list", "1.0")
    client.hset("t:hash", "v", "1.0")
    client.sadd("t:set", "1.0")
    keys = [*EXACT, *FOREIGN, "t:list", "t:hash", "t:set", "t:absent"]
    before = sample("housing_redis_errors_total", operation="mget", kind="bad_value")

    async def scenario() -> list[float | None]:
        cache = redis_cache(redis_server.url, redis_timeout_seconds=1.0)
        found = await cache.lookup(keys)
        await cache.close()
        return found

    assert asyncio.run(scenario()) == [1.25, 1e16, 5e-324] + [None] * (len(FOREIGN) + 4)
    # every foreign value and every key of another type counts; the absent key does not
    assert sample("housing_redis_errors_total", operation="mget", kind="bad_value") - before == (
        len(FOREIGN) + 3
    )


def test_a_huge_value_is_not_read_whole(redis_server: RedisServer) -> None:
    """The lookup reads a bounded prefix of each value: a 10 MB value costs a miss."""
    redis_server.client().set("t:huge", b"1" * 10_000_000)

    async def scenario() -> tuple[list[float | None], int]:
        cache = redis_cache(redis_server.url, redis_timeout_seconds=1.0)
        found = await cache.lookup(["t:huge"])
        await cache.close()
        return found, 0

    assert asyncio.run(scenario())[0] == [None]
    stats = redis_server.client().info("stats")
    assert stats["total_net_output_bytes"] < 1_000_000


def test_redis_killed_then_restarted_fails_open_and_recovers(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        cache = redis_cache(redis_server.url)
        await cache.insert({"t:a": 1.0})
        await flushed(cache)
        assert await cache.lookup(["t:a"]) == [1.0]
        redis_server.kill()
        errors = sample("housing_redis_errors_total", operation="mget", kind="connection")
        for _ in range(2):  # breaker_failures=2
            started = time.monotonic()
            assert await cache.lookup(["t:a"]) == [None]
            assert time.monotonic() - started < TIMEOUT + MARGIN
        assert sample("housing_redis_errors_total", operation="mget", kind="connection") > errors
        assert cache.breaker_state is BreakerState.OPEN
        assert sample("housing_redis_breaker_state") == BreakerState.OPEN
        skipped = sample("housing_redis_skipped_total", operation="mget")
        assert await cache.lookup(["t:a"]) == [None]
        await cache.insert({"t:b": 2.0})
        assert sample("housing_redis_skipped_total", operation="mget") == skipped + 1

        redis_server.start()  # same port, empty
        await asyncio.sleep(0.4)  # past the cool-down: the next call is the probe
        await cache.insert({"t:b": 2.0})
        await flushed(cache)
        assert sample("housing_redis_breaker_state") == BreakerState.CLOSED
        assert await cache.lookup(["t:a", "t:b"]) == [None, 2.0]
        await cache.close()

    asyncio.run(scenario())


def test_hung_redis_costs_one_timeout_then_is_skipped(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        cache = redis_cache(redis_server.url, redis_breaker_failures=1)
        assert await cache.lookup(["t:a"]) == [None]  # connected
        redis_server.pause()
        try:
            timeouts = sample("housing_redis_errors_total", operation="mget", kind="timeout")
            started = time.monotonic()
            assert await cache.lookup(["t:a"]) == [None]
            assert time.monotonic() - started < TIMEOUT + MARGIN
            assert sample("housing_redis_errors_total", operation="mget", kind="timeout") == (
                timeouts + 1
            )
            assert cache.breaker_state is BreakerState.OPEN
        finally:
            redis_server.resume()
        await cache.close()

    asyncio.run(scenario())


async def _serve_bytes(reply: bytes) -> asyncio.Server:
    """A TCP server that answers every command it receives with `reply` (not Redis)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            commands = data.count(b"\r\n*") + data.startswith(b"*")
            writer.write(reply * max(commands, 1))
            await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


@pytest.mark.parametrize(
    "reply", [b"HTTP/1.1 400 Bad Request\r\n\r\n", b"+OK\r\n", b"$-7\r\n"], ids=repr
)
def test_a_server_answering_garbage_is_a_miss(reply: bytes) -> None:
    async def scenario() -> None:
        server = await _serve_bytes(reply)
        port = server.sockets[0].getsockname()[1]
        cache = redis_cache(f"redis://127.0.0.1:{port}/0")
        try:
            for _ in range(3):
                assert await cache.lookup(["t:a", "t:b"]) == [None, None]
                await cache.insert({"t:a": 1.0})
                await flushed(cache)
        finally:
            await cache.close()
            server.close()

    asyncio.run(scenario())


def test_wrong_password_starts_open_and_never_shows_the_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "wrong-" + PASSWORD
    with running_redis(tmp_path, password=PASSWORD) as server:
        url = f"redis://:{wrong}@127.0.0.1:{server.port}/0"

        async def scenario() -> RedisCache:
            cache = redis_cache(url)
            await cache.start()
            assert cache.breaker_state is BreakerState.OPEN
            assert await cache.lookup(["t:a"]) == [None]
            await asyncio.sleep(0.4)
            assert await cache.lookup(["t:a"]) == [None]  # the probe fails too
            await cache.close()
            return cache

        with caplog.at_level(logging.INFO, logger="kserve.predictor.cache.redis_tier"):
            cache = asyncio.run(scenario())
    assert f"127.0.0.1:{server.port}" in caplog.text
    assert "unavailable" in caplog.text
    for shown in (caplog.text, repr(cache), cache.url):
        assert wrong not in shown
        assert PASSWORD not in shown


def test_password_from_settings_when_the_url_has_none(tmp_path: Path) -> None:
    with running_redis(tmp_path, password=PASSWORD) as server:

        async def scenario() -> list[float | None]:
            cache = redis_cache(server.url, redis_password=PASSWORD)
            await cache.start()
            await cache.insert({"t:a": 3.0})
            await flushed(cache)
            found = await cache.lookup(["t:a"])
            await cache.close()
            return found

        assert asyncio.run(scenario()) == [3.0]


def test_rediss_url_uses_tls_without_connecting() -> None:
    cache = redis_cache("rediss://:pw@redis.example:6380/0")
    assert cache._backend.tls  # type: ignore[attr-defined]
    assert repr(cache) == "RedisCache(rediss://:***@redis.example:6380/0)"


def test_masked_url() -> None:
    assert masked_url("redis://:s3cret@h:1/0") == "redis://:***@h:1/0"
    assert masked_url("rediss://user:s3cret@h/0?password=x&db=1") == (
        "rediss://user:***@h/0?password=***&db=1"
    )
    assert masked_url("redis://h:6379/2") == "redis://h:6379/2"


# -- the tiers together ----------------------------------------------------------------------


def test_tiered_cache_merges_tiers_in_order_and_fills_local(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        local = LocalCache(100, 60.0)
        cache = TieredCache(local, redis_cache(redis_server.url))
        local.put_many({"t:local": 1.0})
        redis_server.client().set("t:redis", "2.0")
        hits_local = sample("housing_cache_hits_total", tier="local")
        hits_redis = sample("housing_cache_hits_total", tier="redis")
        misses = sample("housing_cache_misses_total")
        found = await cache.lookup(["t:none", "t:redis", "t:local"])
        assert found == [None, 2.0, 1.0]
        assert sample("housing_cache_hits_total", tier="local") - hits_local == 1
        assert sample("housing_cache_hits_total", tier="redis") - hits_redis == 1
        assert sample("housing_cache_misses_total") - misses == 1
        assert local.get_many(["t:redis"]) == [2.0]  # Redis hits fill the local tier

        await cache.insert({"t:none": 3.0})
        assert cache.remote is not None
        await flushed(cache.remote)
        assert local.get_many(["t:none"]) == [3.0]
        assert redis_server.client().get("t:none") == b"3.0"
        redis_server.kill()
        assert await cache.lookup(["t:none", "t:redis", "t:other"]) == [3.0, 2.0, None]
        await cache.close()

    asyncio.run(scenario())


def test_close_waits_for_pending_writes(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        cache = redis_cache(redis_server.url)
        await cache.insert({f"t:{i}": float(i) for i in range(100)})
        await cache.close()

    asyncio.run(scenario())
    assert redis_server.client().dbsize() == 100


# -- whether Redis pays ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "row_seconds", "round_trip", "consult", "pays"),
    [
        ("always", 10e-6, 100e-6, True, 0.0),
        ("auto", 10e-6, 100e-6, False, 0.0),
        ("auto", 2e-3, 100e-6, True, 1.0),
        ("never", 2e-3, 100e-6, False, 1.0),
    ],
)
def test_redis_is_consulted_as_the_policy_and_the_measurements_say(
    policy: str, row_seconds: float, round_trip: float, consult: bool, pays: float
) -> None:
    assert consult_redis(policy, row_seconds, round_trip) is consult
    assert sample("housing_redis_pays") == pays
    assert sample("housing_model_row_seconds") == row_seconds
    assert sample("housing_redis_round_trip_seconds") == round_trip


def test_auto_consults_a_redis_it_could_not_time_at_start_up() -> None:
    assert consult_redis("auto", 10e-6, None) is True
