"""Prediction caches behind one small async interface.

A cache maps a row key (`<prefix>:<model version>:<row md5>`) to the model's prediction
for that row. `lookup` answers a whole batch at once, `None` for each miss, so a batch can
hit in part. `TieredCache` puts the in-process `LocalCache` in front of the shared
`RedisCache` (predictor/cache/redis_tier.py) when a Redis URL is configured; without one (`make
serve`) it is the in-process tier alone.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from predictor.cache.redis_policy import ALWAYS, NEVER, consult_redis
from predictor.metrics import CACHE_HITS, CACHE_MISSES, count
from predictor.settings import CacheSettings

if TYPE_CHECKING:
    from predictor.cache.redis_tier import RedisCache

K = TypeVar("K")
V = TypeVar("V")


class PredictionCache(Protocol):
    """What the model needs of a cache. Implementations never raise on the request path."""

    @property
    def shared(self) -> bool:
        """True when a lookup may wait on I/O, so other requests can run meanwhile."""
        ...

    def peek(self, keys: Sequence[str]) -> list[float | None]:
        """Like `lookup`, from the in-process tier only: no I/O, no await."""
        ...

    async def lookup(self, keys: Sequence[str]) -> list[float | None]:
        """The cached prediction of each key, or None where there is none."""
        ...

    async def insert(self, entries: Mapping[str, float]) -> None:
        """Remember predictions; may drop them (a cache is never the source of truth)."""
        ...

    async def close(self) -> None:
        """Release connections and background tasks."""
        ...


class LRU(Generic[K, V]):
    """A bounded in-process LRU with a time-to-live per entry.

    Reads refresh recency; an expired entry counts as a miss and is dropped when seen.
    Not thread-safe: it is used from the event loop only.
    """

    def __init__(
        self,
        max_entries: int,
        ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        self._entries: OrderedDict[K, tuple[V, float]] = OrderedDict()
        self._max_entries = max_entries
        self._ttl = ttl_seconds
        self._clock = clock

    def __len__(self) -> int:
        return len(self._entries)

    def get_many(self, keys: Sequence[K]) -> list[V | None]:
        """Synchronous lookup, for callers already on the event loop."""
        now = self._clock()
        found: list[V | None] = []
        for key in keys:
            entry = self._entries.get(key)
            if entry is None:
                found.append(None)
            elif entry[1] <= now:
                del self._entries[key]
                found.append(None)
            else:
                self._entries.move_to_end(key)
                found.append(entry[0])
        return found

    def put_many(self, entries: Mapping[K, V], ttl_seconds: float | None = None) -> None:
        """Synchronous insert, evicting the least recently used entries beyond the bound."""
        expires = self._clock() + (self._ttl if ttl_seconds is None else ttl_seconds)
        for key, value in entries.items():
            self._entries[key] = (value, expires)
            self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)


class LocalCache(LRU[str, float]):
    """The in-process prediction tier: row key → prediction."""

    shared = False

    def peek(self, keys: Sequence[str]) -> list[float | None]:
        return self.get_many(keys)

    async def lookup(self, keys: Sequence[str]) -> list[float | None]:
        return self.get_many(keys)

    async def insert(self, entries: Mapping[str, float]) -> None:
        self.put_many(entries)

    async def close(self) -> None:
        self._entries.clear()


class TieredCache:
    """The in-process LRU in front of an optional shared Redis tier.

    A lookup asks Redis (one round trip) only for the keys the local tier lacks, and Redis
    hits fill the local tier. An insert writes both tiers (Redis in the background).
    Counts hits per tier and misses.
    """

    def __init__(
        self, local: LocalCache, remote: RedisCache | None = None, policy: str = ALWAYS
    ) -> None:
        self.local = local
        self.remote = remote
        self._policy = policy
        self._local_hits = CACHE_HITS.labels(tier="local")
        self._redis_hits = CACHE_HITS.labels(tier="redis")

    @property
    def shared(self) -> bool:
        return self.remote is not None

    async def start(self, model_row_seconds: float | None = None) -> None:
        """Probe the shared tier, if any, and log its state; judge whether it pays for a
        model costing `model_row_seconds` per row, and drop it if the policy says so.
        Never raises."""
        if self.remote is None:
            return
        round_trip = await self.remote.start()
        if model_row_seconds is not None and not consult_redis(
            self._policy, model_row_seconds, round_trip
        ):
            remote, self.remote = self.remote, None
            await remote.close()

    def peek(self, keys: Sequence[str]) -> list[float | None]:
        found = self.local.get_many(keys)
        count(self._local_hits, sum(value is not None for value in found))
        return found

    async def lookup(self, keys: Sequence[str]) -> list[float | None]:
        found = self.local.get_many(keys)
        missing = [i for i, value in enumerate(found) if value is None]
        count(self._local_hits, len(keys) - len(missing))
        filled: dict[str, float] = {}
        if missing and self.remote is not None:
            remote = await self.remote.lookup([keys[i] for i in missing])
            for i, value in zip(missing, remote, strict=True):
                if value is not None:
                    found[i] = filled[keys[i]] = value
            self.local.put_many(filled)
            count(self._redis_hits, len(filled))
        count(CACHE_MISSES, len(missing) - len(filled))
        return found

    async def insert(self, entries: Mapping[str, float]) -> None:
        self.local.put_many(entries)
        if self.remote is not None:
            await self.remote.insert(entries)

    async def close(self) -> None:
        if self.remote is not None:
            await self.remote.close()
        await self.local.close()


def build_cache(settings: CacheSettings) -> TieredCache:
    """The cache tiers the settings ask for: in-process always, Redis when a URL is set."""
    local = LocalCache(settings.local_max_entries, settings.local_ttl_seconds)
    if settings.redis_url is None or settings.redis_policy == NEVER:
        return TieredCache(local)
    # Imported here: redis-py costs start-up time that a server without Redis never repays.
    from predictor.cache.redis_tier import RedisCache

    remote = RedisCache(settings)
    return TieredCache(local, remote, settings.redis_policy)
