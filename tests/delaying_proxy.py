"""A TCP proxy that holds back some of the server's replies: a sick network in front of Redis.

It forwards each client connection to the upstream (a real `redis-server`) and back. Every
`delay_every`-th chunk that comes back from upstream (one chunk is one reply, as each
pooled connection carries one command at a time) waits first, for a time drawn evenly
from 0 to `delay_seconds` (seeded): with `delay_seconds` past the client's timeout, some
replies arrive too late and others just in time, while Redis itself stays healthy. It runs
its own event loop in a thread, so it serves a server subprocess and in-process clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import threading
from collections.abc import Iterator


class DelayingProxy:
    def __init__(
        self,
        upstream_port: int,
        delay_every: int = 0,
        delay_seconds: float = 0.0,
        min_delay_seconds: float = 0.0,
    ):
        self.upstream_port = upstream_port
        self.delay_every = delay_every
        """Hold back every n-th reply; 0: none."""
        self.delay_seconds = delay_seconds
        self.min_delay_seconds = min_delay_seconds
        """Delays are drawn from [min_delay_seconds, delay_seconds]."""
        self.delayed = 0
        self.port = 0
        self._random = random.Random(11)
        self._replies = itertools.count(1)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _listen(self) -> asyncio.Server:
        return await asyncio.start_server(self._connection, "127.0.0.1", 0)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        to_upstream = asyncio.create_task(self._pipe(reader, up_writer, delay=False))
        to_client = asyncio.create_task(self._pipe(up_reader, writer, delay=True))
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait([to_upstream, to_client], return_when=asyncio.FIRST_COMPLETED)
        for task in (to_upstream, to_client):
            task.cancel()
        for w in (writer, up_writer):
            w.close()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: bool
    ) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while data := await reader.read(65536):
                if delay and self.delay_every and next(self._replies) % self.delay_every == 0:
                    self.delayed += 1
                    await asyncio.sleep(
                        self._random.uniform(self.min_delay_seconds, self.delay_seconds)
                    )
                writer.write(data)
                await writer.drain()


@contextlib.contextmanager
def delaying_proxy(
    upstream_port: int,
    delay_every: int = 0,
    delay_seconds: float = 0.0,
    min_delay_seconds: float = 0.0,
) -> Iterator[DelayingProxy]:
    proxy = DelayingProxy(upstream_port, delay_every, delay_seconds, min_delay_seconds)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
