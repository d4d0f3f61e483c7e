"""The ways to reach Redis: one server, a Sentinel-managed master, or a Redis Cluster.

Each backend does one thing: `send` one batch (the lookups and the writes the cache
gathered in one event-loop tick) and hand back a future of its replies, the lookups'
values first. It bounds nothing itself: the caller (predictor.cache.redis_tier) puts a deadline
on the future and cancels it.

- `DirectBackend` (a `redis://` / `rediss://` URL, or `redis+sentinel://`) sends each batch
  as one write on one pipelined connection (predictor.cache.resp_connection): no task, no pool
  checkout, no stream reader per batch. With Sentinel, each (re)connection first asks the
  sentinels where the master is (redis-py's `Sentinel.discover_master`); a failover closes
  or refuses the old master's connection, and the next batch connects to the new one.
- `ClusterBackend` (`--redis_cluster true`) uses redis-py's `RedisCluster` pipeline,
  which sends one pipeline per node and follows `MOVED`/`ASK` and failovers. Keys are
  spread over slots on purpose (no hash tag, which would put every key on one shard), so
  the lookups of a batch are grouped by slot: one lookup script call per slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel

from predictor.cache.resp_connection import RespConnection, open_connection, pack
from predictor.cache.sentinel_url import SENTINEL_SCHEME, parse_sentinel_url

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
_EVAL_LOOKUP: Final = pack(("EVAL", LOOKUP_SCRIPT))[4:]  # without the array header
_PING: Final = pack(("PING",))


class _NewSentinel(Protocol):
    """`Sentinel(...)` as called here: redis-py's `Sentinel.__init__` has no annotations,
    and mypy --strict refuses an untyped call in typed code. The class itself is assigned
    to this type (mypy checks that it accepts these arguments), and called through it."""

    def __call__(
        self, sentinels: list[tuple[str, int]], *, sentinel_kwargs: dict[str, float]
    ) -> Sentinel: ...


_new_sentinel: Final[_NewSentinel] = Sentinel


class RedisBackend(Protocol):
    def send(
        self, keys: Sequence[str], limit: int, writes: Sequence[Write]
    ) -> asyncio.Future[list[Any]]:
        """Send the lookups of `keys` (values of at most `limit` bytes) and the `writes`; a
        future of the replies: first the lookups' raw values (one list, one per key) when
        there are keys, then one reply per write. Error replies come back as
        `hiredis.ReplyError` in the list, or as the future's exception."""
        ...

    async def ping(self) -> None: ...

    def reset(self) -> None:
        """Redis failed: drop the connections, so the next batch opens a fresh one."""
        ...

    async def close(self) -> None: ...


def _packed(keys: Sequence[str], limit: int, writes: Sequence[Write]) -> bytes:
    parts = []
    if keys:
        parts.append(b"*%d\r\n" % (len(keys) + 4) + _EVAL_LOOKUP)
        parts.append(pack((len(keys), *keys, limit))[len(b"*%d\r\n" % (len(keys) + 2)) :])
    parts.extend(pack(("SET", key, value, "PX", ttl_ms)) for key, value, ttl_ms in writes)
    return b"".join(parts)


Address = Callable[[], Awaitable[tuple[str, int]]]


class DirectBackend:
    """One Redis server, or the current master of a Sentinel service, over one pipelined
    connection, opened on first use and again after it is lost."""

    def __init__(
        self,
        address: Address,
        *,
        tls: ssl.SSLContext | None,
        username: str | None,
        password: str | None,
        db: int,
        connect_timeout_seconds: float,
    ) -> None:
        self._address = address
        self._tls = tls
        self._username = username
        self._password = password
        self._db = db
        self._connect_timeout = connect_timeout_seconds
        self._connection: RespConnection | None = None
        self._connecting: asyncio.Task[RespConnection] | None = None

    @property
    def tls(self) -> bool:
        return self._tls is not None

    def send(
        self, keys: Sequence[str], limit: int, writes: Sequence[Write]
    ) -> asyncio.Future[list[Any]]:
        payload = _packed(keys, limit, writes)
        replies = (1 if keys else 0) + len(writes)
        connection = self._connection
        if connection is not None and not connection.closed:
            return connection.send(payload, replies)
        return asyncio.ensure_future(self._connect_and_send(payload, replies))

    async def ping(self) -> None:
        replies = await self._connect_and_send(_PING, 1)
        if replies != [b"PONG"]:
            raise ConnectionError(f"unexpected answer to PING: {replies!r:.80}")

    async def _connect_and_send(self, payload: bytes, replies: int) -> list[Any]:
        connection = self._connection
        if connection is None or connection.closed:
            if self._connecting is None:
                self._connecting = asyncio.ensure_future(self._connect())
                # Its failure reaches the batches waiting for it; if all gave up, it is
                # still retrieved here, so asyncio does not log it as never retrieved.
                self._connecting.add_done_callback(_retrieve)
            # Shielded: one batch giving up does not abort the connection others wait for.
            connection = await asyncio.shield(self._connecting)
        return await connection.send(payload, replies)

    async def _connect(self) -> RespConnection:
        try:
            async with asyncio.timeout(self._connect_timeout):
                host, port = await self._address()
                connection = await open_connection(
                    host,
                    port,
                    tls=self._tls,
                    username=self._username,
                    password=self._password,
                    db=self._db,
                )
        finally:
            self._connecting = None
        self._connection = connection
        return connection

    def reset(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def close(self) -> None:
        self.reset()
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(BaseException):
                await self._connecting


class ClusterBackend:
    """A Redis Cluster through redis-py's `RedisCluster`: a pipeline per node per batch."""

    def __init__(self, client: RedisCluster) -> None:
        self._client = client

    def send(
        self, keys: Sequence[str], limit: int, writes: Sequence[Write]
    ) -> asyncio.Future[list[Any]]:
        return asyncio.ensure_future(self._exchange(keys, limit, writes))

    async def _exchange(
        self, keys: Sequence[str], limit: int, writes: Sequence[Write]
    ) -> list[Any]:
        by_slot: dict[int, list[int]] = {}
        for i, key in enumerate(keys):
            by_slot.setdefault(self._client.keyslot(key), []).append(i)
        pipe = self._client.pipeline()
        for positions in by_slot.values():
            group = [keys[i] for i in positions]
            pipe.execute_command("EVAL", LOOKUP_SCRIPT, len(group), *group, limit)
        for key, value, ttl_ms in writes:
            pipe.execute_command("SET", key, value, "PX", ttl_ms)
        replies = await pipe.execute(raise_on_error=True)
        if not keys:
            return list(replies)
        found: list[Any] = [None] * len(keys)
        for positions, reply in zip(by_slot.values(), replies, strict=False):
            if not isinstance(reply, list) or len(reply) != len(positions):
                return [None, *replies[len(by_slot) :]]  # counted as bad values by the caller
            for i, value in zip(positions, reply, strict=True):
                found[i] = value
        return [found, *replies[len(by_slot) :]]

    async def ping(self) -> None:
        await self._client.initialize()
        await self._client.ping()

    def reset(self) -> None:
        """Nothing to do: RedisCluster replaces a failed node's connections itself."""

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

    No read timeouts and no retries: the caller's deadline bounds each batch, and a failed
    one is a miss, never retried on the request path. The URL's own password wins over
    `password` (from REDIS_PASSWORD).
    """
    parts = urlsplit(url)
    if parts.scheme == SENTINEL_SCHEME:
        sentinels, service, db, url_password = parse_sentinel_url(url)
        manager = _new_sentinel(
            sentinels,
            sentinel_kwargs={
                "socket_timeout": connect_timeout_seconds,
                "socket_connect_timeout": connect_timeout_seconds,
            },
        )

        async def master() -> tuple[str, int]:
            host, port = await manager.discover_master(service)
            return str(host), int(port)

        return DirectBackend(
            master,
            tls=None,
            username=None,
            password=url_password or password,
            db=db,
            connect_timeout_seconds=connect_timeout_seconds,
        )
    if cluster:
        return ClusterBackend(
            RedisCluster.from_url(
                url,
                password=password,
                max_connections=max_connections,
                cluster_error_retry_attempts=1,
                socket_timeout=None,
                socket_connect_timeout=connect_timeout_seconds,
                health_check_interval=0,
            )
        )
    query = parse_qs(parts.query)
    host, port = parts.hostname or "localhost", parts.port or 6379

    async def fixed() -> tuple[str, int]:
        return host, port

    path_db = parts.path.strip("/")
    return DirectBackend(
        fixed,
        tls=ssl.create_default_context() if parts.scheme == "rediss" else None,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else _first(query, "password", password),
        db=int(path_db or _first(query, "db", None) or 0),
        connect_timeout_seconds=connect_timeout_seconds,
    )


def _retrieve(task: asyncio.Task[RespConnection]) -> None:
    if not task.cancelled():
        task.exception()


def _first(query: dict[str, list[str]], name: str, default: str | None) -> str | None:
    values = query.get(name)
    return values[0] if values else default
