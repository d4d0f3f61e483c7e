"""The shared Redis tier: one round trip per lookup, one pipelined write per batch of predictions.

It fails open. Every operation is bounded by one short timeout (tens of milliseconds, the
pool wait, connect, AUTH and round trip included) and never retried; any failure answers
"miss" (lookup) or drops the write, and is counted. A circuit breaker then skips Redis for
a cool-down, so a dead or hung Redis costs a few requests one timeout each, not every
request. Writes run in the background: a request never waits for one.

The password (from the URL or `REDIS_PASSWORD`) goes to redis-py only; everything this
module logs or shows names the server by `masked_url`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any, Final

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from predictor.breaker import BreakerState, CircuitBreaker, Ticket
from predictor.metrics import (
    REDIS_BREAKER_CHANGES,
    REDIS_BREAKER_STATE,
    REDIS_ERRORS,
    REDIS_SECONDS,
    REDIS_SKIPPED,
)
from predictor.settings import masked_url

# A child of kserve's logger, so it shares kserve's handlers and format, without importing
# kserve (whose import parses sys.argv).
logger: Final = logging.getLogger(f"kserve.{__name__}")


class RedisCache:
    """A `PredictionCache` on Redis: values are the `repr` of each float, with a TTL.

    A lookup is one Lua script call (EVALSHA) that reads like MGET, with a bound on the
    bytes read per value; it is labelled `mget` in the metrics.
    """

    def __init__(
        self,
        url: str,
        *,
        password: str | None = None,
        timeout_seconds: float = 0.05,
        ttl_seconds: float = 86400.0,
        ttl_jitter: float = 0.1,
        max_connections: int = 32,
        breaker_failures: int = 3,
        breaker_cooldown_seconds: float = 5.0,
    ) -> None:
        if not 0 <= ttl_jitter < 1:
            raise ValueError("ttl_jitter must be in [0, 1)")
        self.url = masked_url(url)
        self._timeout = timeout_seconds
        self._ttl_ms = ttl_seconds * 1000
        self._jitter = ttl_jitter
        self._breaker = CircuitBreaker(
            breaker_failures, breaker_cooldown_seconds, on_change=self._breaker_changed
        )
        self._last_error = ""
        self._writes: set[asyncio.Task[None]] = set()
        # The URL's own password wins over `password`. No retries (redis-py retries
        # connection errors by default) and no health-check PINGs on the request path.
        pool = BlockingConnectionPool.from_url(
            url,
            password=password,
            max_connections=max_connections,
            timeout=timeout_seconds,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            retry=None,
            health_check_interval=0,
        )
        self._client: Redis = Redis.from_pool(pool)
        self._lookup_script = self._client.register_script(_LOOKUP_SCRIPT)
        REDIS_BREAKER_STATE.set(self._breaker.state)

    def __repr__(self) -> str:
        return f"RedisCache({self.url})"

    @property
    def breaker_state(self) -> BreakerState:
        return self._breaker.state

    async def start(self) -> None:
        """Probe Redis once and log whether the shared tier is in use; never raises."""
        try:
            async with asyncio.timeout(self._timeout):
                await self._client.ping()
        except Exception as e:  # whatever Redis does, start-up goes on
            self._record_error("ping", e)
            self._breaker.trip()
            return
        # Loaded now so the first lookups need no extra round trip. Best effort, with its
        # own timeout: a lookup that finds it missing (also after a Redis restart) loads it.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._timeout):
                await self._client.script_load(_LOOKUP_SCRIPT)
        logger.info("Using Redis at %s as the shared cache tier", self.url)

    async def lookup(self, keys: Sequence[str]) -> list[float | None]:
        if not keys:
            return []
        ticket = self._breaker.allow()
        if ticket is None:
            REDIS_SKIPPED.labels("mget").inc()
            return [None] * len(keys)
        try:
            with REDIS_SECONDS.labels("mget").time():
                async with asyncio.timeout(self._timeout):
                    raw = await self._lookup_script(keys=keys, args=[MAX_VALUE_BYTES])
        except Exception as e:  # fail open: any Redis trouble is a miss
            self._failed("mget", e, ticket)
            return [None] * len(keys)
        self._breaker.succeeded(ticket)
        return _parse_values(raw, len(keys))

    async def insert(self, entries: Mapping[str, float]) -> None:
        """Start writing the entries in the background; the caller does not wait for Redis."""
        if not entries:
            return
        ticket = self._breaker.allow()
        if ticket is None:
            REDIS_SKIPPED.labels("set").inc()
            return
        self._track(asyncio.create_task(self._write(dict(entries), ticket)))

    def _track(self, task: asyncio.Task[None]) -> None:
        """Keep a background task referenced until it is done; `close` waits for them."""
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _drop_idle_connections(self) -> None:
        try:
            await self._client.connection_pool.disconnect(inuse_connections=False)
        except Exception as e:  # best effort: a connection left is found dead later
            logger.debug("Dropping idle Redis connections failed: %s", e)

    async def close(self) -> None:
        """Let pending writes finish (each is bounded by the timeout), then disconnect."""
        await asyncio.gather(*self._writes)
        await self._client.aclose()

    async def _write(self, entries: dict[str, float], ticket: Ticket) -> None:
        pipe = self._client.pipeline(transaction=False)
        for key, value in entries.items():
            pipe.set(key, encode_value(value), px=self._ttl_with_jitter_ms())
        try:
            with REDIS_SECONDS.labels("set").time():
                async with asyncio.timeout(self._timeout):
                    await pipe.execute()
        except Exception as e:  # fail open: a lost write is a later miss
            self._failed("set", e, ticket)
            return
        self._breaker.succeeded(ticket)

    def _ttl_with_jitter_ms(self) -> int:
        # Spread expiries so entries written in one burst do not all expire together.
        factor = 1 + self._jitter * (2 * random.random() - 1)
        return max(1, round(self._ttl_ms * factor))

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
            # The pooled connections belong to the Redis that failed: drop the idle ones
            # now, so that after a restart the first requests do not find them dead one
            # by one (each would cost a miss or a lost write).
            self._track(asyncio.create_task(self._drop_idle_connections()))
            logger.warning(
                "Redis at %s unavailable (%s); serving from the in-process cache until it "
                "returns (next probe in %g s)",
                self.url,
                self._last_error,
                self._breaker.cooldown_seconds,
            )
        elif new is BreakerState.CLOSED:
            logger.info("Redis at %s answers again; using it as the shared cache tier", self.url)


def _error_kind(error: Exception) -> str:
    if isinstance(error, TimeoutError | RedisTimeoutError):
        return "timeout"
    if isinstance(error, RedisConnectionError | OSError):
        return "connection"
    return "error"


# The lookup: one round trip like MGET, but that reads at most ARGV[1] + 1 bytes of each
# value and tells a key of another type (answered 0) from a missing one (nil), so that
# neither a huge value nor a foreign key costs more than a miss.
_LOOKUP_SCRIPT: Final = """
local limit = tonumber(ARGV[1])
local found = {}
for i, key in ipairs(KEYS) do
  local kind = redis.call('TYPE', key)['ok']
  if kind == 'string' then
    found[i] = redis.call('GETRANGE', key, 0, limit)
  elseif kind == 'none' then
    found[i] = false
  else
    found[i] = 0
  end
end
return found
"""


def encode_value(prediction: float) -> str:
    """The one form a prediction is stored in: the shortest repr that reads back exactly."""
    return repr(prediction)


def _parse_values(raw: Any, count: int) -> list[float | None]:
    """Predictions from an MGET reply, in the exact form `encode_value` writes.

    Anything else (another type, other text such as `4_2`, ` 999.5 ` or `42`, a value
    longer than any float's repr) is a miss counted as `bad_value`; long values are
    refused by length, before any parsing.
    """
    if not isinstance(raw, list) or len(raw) != count:
        REDIS_ERRORS.labels("mget", "bad_value").inc()
        return [None] * count
    values: list[float | None] = []
    bad = 0
    for item in raw:
        value = None if item is None else decode_value(item)
        if item is not None and value is None:
            bad += 1
        values.append(value)
    if bad:
        REDIS_ERRORS.labels("mget", "bad_value").inc(bad)
    return values


# The longest repr of a finite float is 24 characters (`-2.2250738585072014e-308`).
MAX_VALUE_BYTES: Final = 24


def decode_value(item: Any) -> float | None:
    """The prediction stored as `item`, or None unless it is exactly what we write."""
    if not isinstance(item, bytes) or not 0 < len(item) <= MAX_VALUE_BYTES:
        return None
    try:
        text = item.decode("ascii")
        value = float(text)
    except ValueError:  # UnicodeDecodeError included
        return None
    if not math.isfinite(value) or repr(value) != text:
        return None
    return value
