"""The ways to reach Redis: one server, a Sentinel-managed master, or a Redis Cluster.

Each backend does one thing: `exchange` sends one batch (the lookups and the writes the
cache gathered in one event-loop tick) and returns the raw values of the lookups. It
bounds nothing itself: the caller (predictor.redis_cache) puts a deadline on the whole
exchange and cancels it.

- `DirectBackend` (a `redis://` / `rediss://` URL, or `redis+sentinel://`) keeps its own
  small set of connections and writes the whole batch in one packed buffer: one send, one
  read of the replies. Not redis-py's `Redis` client: its per-command pool checkout checks
  each idle connection for stray data (a read with a zero timeout), and its pipeline and
  script wrappers cost more than the round trip saves. With Sentinel, each new connection
  asks the sentinels where the master is (redis-py's `SentinelManagedConnection`), so
  after a failover the connections that fail are replaced by ones to the new master.
- `ClusterBackend` (`--redis_cluster true`) uses redis-py's `RedisCluster` pipeline,
  which sends one pipeline per node and follows `MOVED`/`ASK` and failovers. Keys are
  spread over slots on purpose (no hash tag, which would put every key on one shard), so
  the lookups of a batch are grouped by slot: one lookup script call per slot.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

from redis.asyncio import ConnectionPool
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.sentinel import Sentinel

from predictor.sentinel_url import SENTINEL_SCHEME, parse_sentinel_url

Write = tuple[str, bytes, int]
"""One write: key, encoded value, TTL in milliseconds."""

# The lookup: like MGET, but it reads at most ARGV[1] + 1 bytes of each value and tells a
# key of another type (answered 0) from a missing one (nil), so that neither a huge value
# nor a foreign key costs more than a miss. Sent with EVAL each time (a few hundred bytes):
# Redis caches the compiled script by its digest, and there is no NOSCRIPT to recover from
# after a restart, a failover or on a cluster node that never saw SCRIPT LOAD.
LOOKUP_SCRIPT: Final = """
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


class RedisBackend(Protocol):
    async def ping(self) -> None:
        """One round trip to the server (each shard of a cluster is reached on first use)."""
        ...

    async def exchange(self, keys: Sequence[str], limit: int, writes: Sequence[Write]) -> Any:
        """Send the lookups of `keys` and the `writes`; return the lookups' raw values (one
        per key, in order; a list, else the caller counts it as bad)."""
        ...

    async def close(self) -> None: ...


def _lookup_command(keys: Sequence[str], limit: int) -> tuple[Any, ...]:
    return ("EVAL", LOOKUP_SCRIPT, len(keys), *keys, limit)


def _set_command(write: Write) -> tuple[Any, ...]:
    key, value, ttl_ms = write
    return ("SET", key, value, "PX", ttl_ms)


class DirectBackend:
    """One Redis server (or the current master of a Sentinel service): a connection per
    batch in flight (the caller bounds how many), reused once its batch is answered."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        self._idle: list[AbstractConnection] = []
        self._closing: set[asyncio.Task[None]] = set()

    async def ping(self) -> None:
        await self._round_trip([("PING",)])

    async def exchange(self, keys: Sequence[str], limit: int, writes: Sequence[Write]) -> Any:
        commands = [_lookup_command(keys, limit)] if keys else []
        commands += [_set_command(write) for write in writes]
        replies = await self._round_trip(commands)
        return replies[0] if keys else None

    async def _round_trip(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        connection = self._idle.pop() if self._idle else self._pool.make_connection()  # type: ignore[no-untyped-call]
        try:
            if not connection.is_connected:
                await connection.connect()
            await connection.send_packed_command(
                connection.pack_commands(commands), check_health=False
            )
            replies = [await connection.read_response() for _ in commands]
        except BaseException:
            # Cancelled mid-reply, or broken: its state is unknown, so it is closed.
            self._discard(connection)
            raise
        self._idle.append(connection)
        return replies

    def drop_idle(self) -> None:
        """Close the idle connections (Redis failed: they may be dead)."""
        idle, self._idle = self._idle, []
        for connection in idle:
            self._discard(connection)

    def _discard(self, connection: AbstractConnection) -> None:
        task = asyncio.get_running_loop().create_task(connection.disconnect(nowait=True))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            with contextlib.suppress(Exception):
                await connection.disconnect()
        await asyncio.gather(*self._closing, return_exceptions=True)
        await self._pool.disconnect()


class ClusterBackend:
    """A Redis Cluster through redis-py's `RedisCluster`: a pipeline per node per batch."""

    def __init__(self, client: RedisCluster) -> None:
        self._client = client

    def drop_idle(self) -> None:
        """Nothing to do: RedisCluster replaces a failed node's connections itself."""

    async def ping(self) -> None:
        await self._client.initialize()
        await self._client.ping()

    async def exchange(self, keys: Sequence[str], limit: int, writes: Sequence[Write]) -> Any:
        by_slot: dict[int, list[int]] = {}
        for i, key in enumerate(keys):
            by_slot.setdefault(self._client.keyslot(key), []).append(i)
        pipe = self._client.pipeline()
        for positions in by_slot.values():
            pipe.execute_command(*_lookup_command([keys[i] for i in positions], limit))
        for write in writes:
            pipe.execute_command(*_set_command(write))
        replies = await pipe.execute(raise_on_error=True)
        found: list[Any] = [None] * len(keys)
        for positions, reply in zip(by_slot.values(), replies, strict=False):
            if not isinstance(reply, list) or len(reply) != len(positions):
                return None  # counted as bad values by the caller
            for i, value in zip(positions, reply, strict=True):
                found[i] = value
        return found if keys else None

    async def close(self) -> None:
        await self._client.aclose()


def connect(
    url: str,
    *,
    cluster: bool,
    password: str | None,
    connect_timeout_seconds: float,
    max_connections: int,
) -> DirectBackend | ClusterBackend:
    """The backend for `url`; connects lazily, so it never fails on an unreachable Redis.

    No socket read timeouts and no retries: the caller's deadline bounds each exchange, and
    a failed one is a miss, never retried on the request path.
    """
    options: dict[str, Any] = {
        "password": password,
        "socket_timeout": None,
        "socket_connect_timeout": connect_timeout_seconds,
        "retry": None,
        "health_check_interval": 0,
    }
    if urlsplit(url).scheme == SENTINEL_SCHEME:
        return DirectBackend(_sentinel_pool(url, options))
    if cluster:
        # The URL's own password wins; RedisCluster.from_url keeps it over `password`.
        options.pop("retry")
        return ClusterBackend(
            RedisCluster.from_url(
                url, max_connections=max_connections, cluster_error_retry_attempts=1, **options
            )
        )
    return DirectBackend(ConnectionPool.from_url(url, **options))


def _sentinel_pool(url: str, options: dict[str, Any]) -> ConnectionPool:
    """`redis+sentinel://[:password@]host:port[,host:port...]/service_name[/db]`: the
    password is the master's (the sentinels are asked without one)."""
    sentinels, service, db, password = parse_sentinel_url(url)
    if password is not None:
        options = {**options, "password": password}
    manager = Sentinel(
        sentinels,
        sentinel_kwargs={
            "socket_timeout": options["socket_connect_timeout"],
            "socket_connect_timeout": options["socket_connect_timeout"],
        },
    )
    pool: ConnectionPool = manager.master_for(service, db=db, **options).connection_pool
    return pool
