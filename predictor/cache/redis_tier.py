"""The shared Redis tier: the lookups and writes of one event-loop tick in one round trip.

Requests running in the same tick of the event loop queue their lookups and writes here;
at the end of the tick one exchange sends them all (one lookup script call for every
queued key, one `SET ... PX` per queued write, in one packed buffer), and each waiting
lookup gets its slice of the answer. Under load one round trip, one task, one deadline
and one histogram observation serve many requests; alone, a request costs one of each for
its lookup and one for its write (which it does not wait for).

It fails open. Each exchange has one deadline (predictor.cache.redis_deadline: it blames Redis,
not a busy event loop) and is never retried; any failure answers "miss" to its lookups and
drops its writes, and counts once against the circuit breaker, which then skips Redis for
a cool-down, so a dead or hung Redis costs a few requests one timeout each, not every
request.

The password (from the URL or `REDIS_PASSWORD`) goes to redis-py only; everything this
module logs or shows names the server by `masked_url`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, Final

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from predictor.cache.breaker import BreakerState, CircuitBreaker, Ticket
from predictor.cache.redis_backends import RedisBackend, Write, connect
from predictor.cache.redis_deadline import RedisDeadline
from predictor.cache.signing import ValueCodec
from predictor.cache.urls import masked_url
from predictor.metrics import (
    REDIS_BREAKER_CHANGES,
    REDIS_BREAKER_STATE,
    REDIS_ERRORS,
    REDIS_SECONDS,
    REDIS_SKIPPED,
)
from predictor.settings import CacheSettings

# A child of kserve's logger, so it shares kserve's handlers and format, without importing
# kserve (whose import parses sys.argv).
logger: Final = logging.getLogger(f"kserve.{__name__}")


class _Batch:
    """What the requests of one tick asked of Redis."""

    __slots__ = ("keys", "waiters", "writes")

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.waiters: list[tuple[asyncio.Future[list[float | None]], int, int]] = []
        """Each lookup's future and its slice of `keys`."""
        self.writes: list[Write] = []

    def answer(self, values: list[float | None]) -> None:
        for future, start, end in self.waiters:
            if not future.done():
                future.set_result(values[start:end])

    def miss(self) -> None:
        for future, start, end in self.waiters:
            if not future.done():
                future.set_result([None] * (end - start))


class RedisCache:
    """A `PredictionCache` on the Redis of `settings.redis_url`: values are the `repr` of
    each float (signed with `--cache_signing_key`), with a TTL."""

    def __init__(self, settings: CacheSettings) -> None:
        url = settings.redis_url
        if url is None:
            raise ValueError("no Redis URL in the settings")
        self.url = masked_url(url)
        self._timeout = settings.redis_timeout_seconds
        self._ttl_ms = settings.redis_ttl_seconds * 1000
        self._jitter = settings.redis_ttl_jitter
        self._codec = ValueCodec(settings.signing_key)
        self._breaker = CircuitBreaker(
            settings.redis_breaker_failures,
            settings.redis_breaker_cooldown_seconds,
            on_change=self._breaker_changed,
        )
        self._backend: RedisBackend = connect(
            url,
            cluster=settings.redis_cluster,
            password=settings.redis_password,
            connect_timeout_seconds=self._timeout,
            max_connections=settings.redis_max_connections,
        )
        self._max_inflight = settings.redis_max_connections
        self._batch = _Batch()
        self._scheduled = False
        self._write_timer: asyncio.TimerHandle | None = None
        self._exchanges: set[asyncio.Future[list[Any]]] = set()
        self._last_error = ""
        self._lookup_seconds = REDIS_SECONDS.labels("mget")
        self._write_seconds = REDIS_SECONDS.labels("set")
        REDIS_BREAKER_STATE.set(self._breaker.state)

    def __repr__(self) -> str:
        return f"RedisCache({self.url})"

    @property
    def breaker_state(self) -> BreakerState:
        return self._breaker.state

    async def start(self) -> float | None:
        """Probe Redis and time its round trip (seconds, the best of a few pings); None, and
        the breaker open, when it does not answer. Never raises."""
        best = None
        try:
            for _ in range(PROBE_PINGS):
                started = time.perf_counter()
                async with asyncio.timeout(max(self._timeout, START_TIMEOUT_SECONDS)):
                    await self._backend.ping()
                elapsed = time.perf_counter() - started
                best = elapsed if best is None else min(best, elapsed)
        except Exception as e:  # whatever Redis does, start-up goes on
            self._record_error("ping", e)
            self._breaker.trip()
            return None
        logger.info("Using Redis at %s as the shared cache tier", self.url)
        return best

    async def lookup(self, keys: Sequence[str]) -> list[float | None]:
        if not keys:
            return []
        if self._breaker.skipping():
            REDIS_SKIPPED.labels("mget").inc()
            return [None] * len(keys)
        batch = self._batch
        start = len(batch.keys)
        batch.keys.extend(keys)
        future: asyncio.Future[list[float | None]] = asyncio.get_running_loop().create_future()
        batch.waiters.append((future, start, len(batch.keys)))
        self._schedule()
        return await future

    async def insert(self, entries: Mapping[str, float]) -> None:
        """Queue the entries for the tick's exchange; the caller does not wait for Redis."""
        if not entries:
            return
        if self._breaker.skipping():
            REDIS_SKIPPED.labels("set").inc()
            return
        encode, ttl = self._codec.encode, self._ttl_with_jitter_ms
        self._batch.writes.extend(
            (key, encode(key, value), ttl()) for key, value in entries.items()
        )
        self._schedule()

    async def close(self) -> None:
        """Send what is queued, let the exchanges in flight finish (each is bounded by its
        deadline), then disconnect."""
        while self._exchanges or self._batch.keys or self._batch.writes:
            self._flush()
            await asyncio.gather(*self._exchanges, return_exceptions=True)
        await self._backend.close()

    # -- the exchange of one tick ---------------------------------------------------------

    def _schedule(self) -> None:
        """Flush at the end of this tick when lookups wait; writes alone wait a little
        longer (`WRITE_DELAY_SECONDS`), so that under load they ride along with the next
        lookups instead of costing an exchange of their own."""
        if self._scheduled:
            return
        loop = asyncio.get_running_loop()
        if self._batch.keys:
            self._scheduled = True
            if self._write_timer is not None:
                self._write_timer.cancel()
                self._write_timer = None
            loop.call_soon(self._flush)
        elif self._write_timer is None:
            self._write_timer = loop.call_later(WRITE_DELAY_SECONDS, self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        batch = self._batch
        if not (batch.keys or batch.writes):
            return
        if len(self._exchanges) >= self._max_inflight:
            return  # the batch grows until an exchange in flight is answered
        self._batch = _Batch()
        ticket = self._breaker.allow()
        if ticket is None:  # opened since the requests queued
            if batch.keys:
                REDIS_SKIPPED.labels("mget").inc()
            if batch.writes:
                REDIS_SKIPPED.labels("set").inc()
            batch.miss()
            return
        started = time.perf_counter()
        try:
            replies = self._backend.send(batch.keys, self._codec.max_bytes, batch.writes)
        except Exception as e:  # fail open, as for a failure in flight
            self._failed("mget" if batch.keys else "set", e, ticket)
            batch.miss()
            return
        deadline = RedisDeadline(asyncio.get_running_loop(), replies, self._timeout)
        self._exchanges.add(replies)
        replies.add_done_callback(partial(self._answered, batch, ticket, deadline, started))

    def _answered(
        self,
        batch: _Batch,
        ticket: Ticket,
        deadline: RedisDeadline,
        started: float,
        replies: asyncio.Future[list[Any]],
    ) -> None:
        """The exchange is over (answered, failed, or given up on by its deadline)."""
        deadline.cancel()
        self._exchanges.discard(replies)
        seconds = self._lookup_seconds if batch.keys else self._write_seconds
        seconds.observe(time.perf_counter() - started)
        error = _failure(replies, deadline)
        if error is not None:
            self._failed("mget" if batch.keys else "set", error, ticket)
            batch.miss()
        elif replies.cancelled():  # closing
            batch.miss()
        else:
            self._breaker.succeeded(ticket)
            if batch.keys:
                batch.answer(self._decode(batch.keys, replies.result()[0]))
        if self._batch.keys or self._batch.writes:
            self._schedule()

    def _decode(self, keys: list[str], raw: Any) -> list[float | None]:
        """Predictions from the lookup's reply; anything this service did not write (other
        text, another type, a bad or missing signature) is a miss counted as `bad_value`."""
        if not isinstance(raw, list) or len(raw) != len(keys):
            REDIS_ERRORS.labels("mget", "bad_value").inc()
            return [None] * len(keys)
        decode = self._codec.decode
        values = [
            None if item is None else decode(key, item) for key, item in zip(keys, raw, strict=True)
        ]
        bad = sum(value is None for value in values) - raw.count(None)
        if bad:
            REDIS_ERRORS.labels("mget", "bad_value").inc(bad)
        return values

    def _ttl_with_jitter_ms(self) -> int:
        # Spread expiries so entries written in one burst do not all expire together.
        factor = 1 + self._jitter * (2 * random.random() - 1)
        return max(1, round(self._ttl_ms * factor))

    # -- failures and the breaker ---------------------------------------------------------

    def _failed(self, operation: str, error: Exception, ticket: Ticket) -> None:
        self._record_error(operation, error)
        self._breaker.failed(ticket)

    def _record_error(self, operation: str, error: Exception) -> None:
        REDIS_ERRORS.labels(operation, _error_kind(error)).inc()
        self._last_error = self._describe(error)

    def _describe(self, error: Exception) -> str:
        if isinstance(error, TimeoutError) and not str(error):
            return f"no answer within {self._timeout * 1000:g} ms"
        return f"{type(error).__name__}: {error}"

    def _breaker_changed(self, old: BreakerState, new: BreakerState) -> None:
        REDIS_BREAKER_STATE.set(new)
        REDIS_BREAKER_CHANGES.labels(new.name.lower()).inc()
        if old is BreakerState.CLOSED and new is BreakerState.OPEN:
            # The connection belongs to the Redis that failed: drop it now, so that after a
            # restart the probe does not find it dead and fail for nothing.
            self._backend.reset()
            logger.warning(
                "Redis at %s unavailable (%s); serving from the in-process cache until it "
                "returns (next probe in %g s)",
                self.url,
                self._last_error,
                self._breaker.cooldown_seconds,
            )
        elif new is BreakerState.CLOSED:
            logger.info("Redis at %s answers again; using it as the shared cache tier", self.url)


PROBE_PINGS: Final = 5
# The start-up probe connects (and, for a cluster, reads its slot map from a node and
# connects to it): not a request-path round trip, and a busy machine can take longer.
START_TIMEOUT_SECONDS: Final = 0.5
# Writes are never waited for: holding them this long costs nothing but lets them share
# the exchange of the next lookups (under load, requests arrive more often than this).
WRITE_DELAY_SECONDS: Final = 0.002


def _failure(replies: asyncio.Future[list[Any]], deadline: RedisDeadline) -> Exception | None:
    """What went wrong with an exchange, if anything: its deadline passed, it failed, or
    Redis answered one of its commands with an error."""
    if replies.cancelled():
        return TimeoutError() if deadline.expired else None
    error = replies.exception()
    if error is not None:
        return error if isinstance(error, Exception) else RuntimeError(repr(error))
    for reply in replies.result():
        if isinstance(reply, hiredis.ReplyError):
            return ResponseError(str(reply))
    return None


def _error_kind(error: Exception) -> str:
    if isinstance(error, TimeoutError | RedisTimeoutError):
        return "timeout"
    if isinstance(error, RedisConnectionError | OSError):
        return "connection"
    return "error"
