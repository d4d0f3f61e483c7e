"""The process's servers: uvicorn (REST) and grpc.aio (gRPC) in one event loop, run here.

kserve is a library here (its data plane, model repository, REST route registration and
V2 protos); its `ModelServer` is not used. `Servers.serve`:

- starts the cache tier (`starting`), binds the gRPC port (a taken one exits 1 before
  REST listens), then serves REST and gRPC side by side;
- owns the signals. SIGTERM, SIGINT and SIGQUIT drain in one order: `draining` runs (gRPC
  health turns NOT_SERVING and ends its Watch streams), REST stops accepting
  and finishes what it has (uvicorn's graceful shutdown, bounded by its grace period and
  by the connection bounds of predictor.upstream.uvicorn_protocol), then gRPC stops
  within `grace_seconds`, then `stopped` runs (the model unloaded, the cache closed). A
  signal that arrives before the loop runs (`record_early_signals`) stops it at once.
  SIGHUP is logged and ignored: there is nothing to reload, and a hang-up of the terminal
  that started the server is no reason to stop serving;
- contains failures. A gRPC server that ends by itself (grpc's server loop raising, say)
  is logged (one ERROR line of ours), counted (`housing_server_restarts_total`), built again on
  its port after a short back-off (longer after each failure, short again once a server
  has served a minute), while REST serves on: a restart takes under a second,
  and the probes, which are REST's, have nothing to act on. REST ending by itself ends
  the process with status 1: it carries the probes, so the platform must replace the pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from types import FrameType
from typing import Final

import uvicorn
from grpc import aio

from predictor.metrics import SERVER_RESTARTS

logger: Final = logging.getLogger("kserve.predictor.server")

STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT)
# Back-off between two builds of a failed gRPC server: from the first to the last; it
# starts again from the first once a server has served this long.
GRPC_RESTART_SECONDS: Final = (0.1, 0.5, 2.0)
GRPC_HEALTHY_SECONDS: Final = 60.0

_early_signals: list[int] = []


def record_early_signals() -> None:
    """Until `Servers.serve` runs, a stop signal only records itself (start-up is stopped
    as soon as the loop runs); SIGHUP is ignored."""

    def record(sig: int, frame: FrameType | None) -> None:
        _early_signals.append(sig)

    for sig in STOP_SIGNALS:
        signal.signal(sig, record)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


class Servers:
    """REST and gRPC, started, supervised and stopped together (see the module docstring)."""

    def __init__(
        self,
        rest: uvicorn.Server,
        grpc: Callable[[], aio.Server] | None,
        *,
        grace_seconds: float,
        max_asyncio_workers: int | None,
        starting: Callable[[], Awaitable[None]],
        draining: Callable[[], None],
        stopped: Callable[[], Awaitable[None]],
    ) -> None:
        self._rest = rest
        self._build_grpc = grpc
        self._grace = grace_seconds
        self._max_asyncio_workers = max_asyncio_workers
        self._starting = starting
        self._draining = draining
        self._stopped = stopped
        self._stop_requested = asyncio.Event()
        self._grpc: aio.Server | None = None

    async def serve(self) -> int:
        """Serve until a stop signal (0) or until REST ends by itself (1)."""
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(self._max_asyncio_workers))
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self._request_stop, sig)
        loop.add_signal_handler(signal.SIGHUP, logger.warning, "SIGHUP received: ignored")
        if _early_signals:
            logger.info("Stopped during start-up (signal %d)", _early_signals[0])
            return 0
        await self._starting()
        if self._stop_requested.is_set():  # signalled while the cache started
            await self._stopped()
            return 0
        grpc_task = None
        if self._build_grpc is not None:
            self._grpc = self._build_grpc()
            grpc_task = asyncio.create_task(self._supervise_grpc(self._grpc, self._build_grpc))
        rest_task = asyncio.create_task(self._rest.serve())
        stop_wait = asyncio.create_task(self._stop_requested.wait())
        await asyncio.wait((rest_task, stop_wait), return_when=asyncio.FIRST_COMPLETED)
        status = 0
        if not self._stop_requested.is_set():
            logger.error("The REST server ended by itself: stopping the process")
            status = 1
            self._stop_requested.set()
        await stop_wait
        self._draining()
        self._rest.should_exit = True
        await asyncio.wait([rest_task])  # drain HTTP first, the model still loaded
        if rest_task.exception() is not None:
            status = 1
        if grpc_task is not None:
            await self._stop_grpc()
            await grpc_task
        await self._stopped()
        return status

    def _request_stop(self, sig: int) -> None:
        if not self._stop_requested.is_set():
            logger.info("Signal %d received: draining", sig)
            self._stop_requested.set()

    async def _stop_grpc(self) -> None:
        if self._grpc is not None:
            await self._grpc.stop(grace=self._grace)

    async def _supervise_grpc(self, server: aio.Server, build: Callable[[], aio.Server]) -> None:
        """Serve gRPC; `build` and start it again whenever it ends without being asked to."""
        failures = 0
        loop = asyncio.get_running_loop()
        while True:
            with contextlib.suppress(RuntimeError):  # the port was taken since the build
                await server.start()
            started = loop.time()
            failure: BaseException | None = None
            try:
                await server.wait_for_termination()
            except Exception as e:
                failure = e
            if self._stop_requested.is_set():
                return
            SERVER_RESTARTS.labels("grpc").inc()
            if loop.time() - started >= GRPC_HEALTHY_SECONDS:
                failures = 0
            pause = GRPC_RESTART_SECONDS[min(failures, len(GRPC_RESTART_SECONDS) - 1)]
            failures += 1
            logger.error(
                "The gRPC server ended by itself (%s): building it again in %.1f s; REST serves on",
                repr(failure) if failure else "no error",
                pause,
            )
            with contextlib.suppress(Exception):
                await server.stop(grace=0)
            rebuilt = await self._rebuild_grpc(build, pause)
            if rebuilt is None:
                return
            server = self._grpc = rebuilt

    async def _rebuild_grpc(
        self, build: Callable[[], aio.Server], pause: float
    ) -> aio.Server | None:
        """A new gRPC server on the same port, or None once a stop is requested."""
        while not self._stop_requested.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_requested.wait(), pause)
                return None
            try:
                return build()
            except SystemExit:  # the port is still held (predictor.grpc.server.PortInUse)
                logger.error("The gRPC port is still taken: trying again in %.1f s", pause)
        return None
