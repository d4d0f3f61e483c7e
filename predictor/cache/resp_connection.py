"""One pipelined connection to a Redis server: batches of commands out, replies in order.

The hot path of the shared tier in as few steps as possible: a batch is one
`transport.write` of pre-packed RESP, and its replies are parsed by hiredis in
`data_received` and handed to the batch's future, with no task, no stream reader and no
coroutine per read. Redis answers the commands of one connection in order, so one
connection carries every batch of the process, each waiting only for its own replies; a
batch whose caller gave up (its deadline passed) keeps its place and its late replies are
dropped when they come. Used for a standalone Redis and for a Sentinel-managed master
(predictor.cache.redis_backends); a Redis Cluster goes through redis-py instead.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any, cast

import hiredis
from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError


def pack(command: Sequence[bytes | str | int]) -> bytes:
    """One command in RESP: an array of bulk strings."""
    parts = [b"*%d\r\n" % len(command)]
    for arg in command:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


class _Pending:
    """The replies one batch still waits for."""

    __slots__ = ("future", "remaining", "replies")

    def __init__(self, future: asyncio.Future[list[Any]], count: int) -> None:
        self.future = future
        self.remaining = count
        self.replies: list[Any] = []


class RespConnection(asyncio.Protocol):
    """An open connection; `closed` once lost, and then every waiting batch has failed."""

    def __init__(self) -> None:
        self._reader = hiredis.Reader()
        self._pending: deque[_Pending] = deque()
        self._transport: asyncio.Transport | None = None
        self.closed = False

    @property
    def waiting(self) -> int:
        """Batches sent and not yet fully answered (including abandoned ones)."""
        return len(self._pending)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A TCP transport (uvloop's is not a subclass of asyncio.Transport, but is one).
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        pending = self._pending
        while True:
            try:
                reply = self._reader.gets()
            except hiredis.ProtocolError:  # not Redis speaking
                self.close()
                return
            if reply is False:
                return
            if not pending:  # a reply nobody asked for: the stream is out of step
                self.close()
                return
            batch = pending[0]
            batch.replies.append(reply)
            batch.remaining -= 1
            if not batch.remaining:
                pending.popleft()
                if not batch.future.done():
                    batch.future.set_result(batch.replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        error = RedisConnectionError(f"connection to Redis lost ({exc or 'closed by Redis'})")
        while self._pending:
            future = self._pending.popleft().future
            if not future.done():
                future.set_exception(error)

    def send(self, payload: bytes, replies: int) -> asyncio.Future[list[Any]]:
        """Write `payload` (that many commands, packed); a future of their replies, in order.
        A reply that is an error comes back as an `hiredis.ReplyError` in the list."""
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        if self.closed or self._transport is None:
            future.set_exception(RedisConnectionError("connection to Redis closed"))
            return future
        self._pending.append(_Pending(future, replies))
        self._transport.write(payload)
        return future

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self.closed = True


async def open_connection(
    host: str,
    port: int,
    *,
    tls: ssl.SSLContext | None,
    username: str | None,
    password: str | None,
    db: int,
) -> RespConnection:
    """Connect, authenticate and select the database; raises on any refusal."""
    loop = asyncio.get_running_loop()
    _, connection = await loop.create_connection(
        RespConnection, host, port, ssl=tls, server_hostname=host if tls else None
    )
    handshake: list[Sequence[bytes | str | int]] = []
    if password is not None:
        handshake.append(("AUTH", username, password) if username else ("AUTH", password))
    if db:
        handshake.append(("SELECT", db))
    if handshake:
        try:
            replies = await connection.send(b"".join(map(pack, handshake)), len(handshake))
            if password is not None and isinstance(replies[0], hiredis.ReplyError):
                raise AuthenticationError(str(replies[0]))
            raise_errors(replies)
        except BaseException:
            connection.close()
            raise
    return connection


def raise_errors(replies: Iterable[Any]) -> None:
    """Raise the first error reply as redis-py's `ResponseError`."""
    for reply in replies:
        if isinstance(reply, hiredis.ReplyError):
            raise ResponseError(str(reply))
