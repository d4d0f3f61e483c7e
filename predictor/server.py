"""kserve's ModelServer with our HTTP protocol, app, repository extension and signal handling.

uvicorn serves the project's app (predictor.app, given with `serve_app`) in front of
kserve's. Three changes to kserve's `ModelServer`, each at a hook kserve itself calls:

- uvicorn speaks the bounded protocol of `predictor.upstream.uvicorn_protocol` (set in
  `_serve`, before uvicorn loads its config);
- the model repository extension is the one given (predictor.upstream.kserve_repository:
  off by default);
- SIGTERM, SIGINT and SIGQUIT stop the server cleanly at any moment of start-up. kserve's
  handler creates a task, which raises when the event loop is not running yet (a crash
  with a traceback), and may stop the gRPC server before it started (which then serves
  on). Here a signal before the loop runs ends `_serve` at once; one while the servers
  start tells uvicorn to exit and stops gRPC once it is up. While uvicorn serves, its own
  handler has SIGTERM and SIGINT, then hands them back here when it is done (uvicorn
  re-raises them). SIGQUIT, which uvicorn does not handle, drains the same way: uvicorn
  is told to exit, and kserve's stop (gRPC, then unloading the model) waits until it has
  (kserve's own unloads the model at once, so requests in flight got 404).
- SIGHUP is logged and ignored: there is nothing to reload, and a hang-up of the
  terminal or session that started the server is no reason to stop serving.
- `--max_asyncio_workers` sizes the default executor of the loop that serves. kserve sets
  it on the loop current before `asyncio.run`, which then serves on a new loop, so the
  flag did nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from types import FrameType
from typing import Any, Final

from kserve import ModelServer
from kserve.logging import logger
from kserve.protocol.model_repository_extension import ModelRepositoryExtension
from starlette.types import ASGIApp

from predictor.settings import ConnectionLimits
from predictor.upstream.kserve_rest_app import serve_app
from predictor.upstream.uvicorn_protocol import protocol_factory

STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT)
# How long a stop waits for the gRPC server to come up before stopping it.
GRPC_START_WAIT_SECONDS: Final = 10.0


class PredictorServer(ModelServer):  # type: ignore[misc]
    def __init__(
        self,
        *,
        limits: ConnectionLimits,
        repository: ModelRepositoryExtension,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_repository_extension = repository
        self._limits = limits
        self._loop: asyncio.AbstractEventLoop | None = None
        self._early_signal: int | None = None
        self._stopping: asyncio.Task[None] | None = None
        self._rest_serving: asyncio.Future[Any] | None = None
        self._app: ASGIApp | None = None

    def serve_app(self, app: ASGIApp) -> None:
        """Serve `app` over REST (predictor.app) in front of kserve's."""
        self._app = app

    def register_signal_handler(self) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._on_signal)
        signal.signal(signal.SIGHUP, self._on_hangup)

    def _on_hangup(self, sig: int, frame: FrameType | None) -> None:
        loop = self._loop
        if loop is not None:  # log from the loop: a signal handler must not take locks
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(logger.warning, "SIGHUP received: ignored")

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        """Runs in the main thread between two bytecodes: only record or schedule."""
        loop = self._loop
        if loop is None:
            self._early_signal = sig
            return
        # A closed loop raises: the process is on its way out anyway.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._begin_stop, sig)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        # kserve's setup_event_loop, run before, resolved None to its formula.
        self._loop.set_default_executor(ThreadPoolExecutor(self.max_asyncio_workers))
        if self._rest_server is not None:
            self._rest_server.config.http = protocol_factory(self._limits)
            if self._app is not None:
                serve_app(self._rest_server, self._app)
        if self._early_signal is not None:
            logger.info("Stopped during start-up (signal %d)", self._early_signal)
            for server in self.servers:
                server.close()  # coroutines never started
            return
        serving: list[asyncio.Future[Any]] = [asyncio.ensure_future(s) for s in self.servers]
        if self._rest_server is not None:
            self._rest_serving = serving[0]  # kserve puts the REST server first
        await asyncio.gather(*serving)
        if self._stopping is not None:
            await self._stopping

    def _begin_stop(self, sig: int) -> None:
        if self._stopping is not None:
            return
        if self._rest_server is not None:
            self._rest_server._server.should_exit = True
        self._stopping = asyncio.get_running_loop().create_task(self._stop(sig))

    async def _stop(self, sig: int) -> None:
        if self._rest_serving is not None:  # drain HTTP first, the model still loaded
            await asyncio.wait([self._rest_serving])
        await self._grpc_started()
        super().stop(sig)  # kserve's: stops gRPC (within its grace period), unloads models

    async def _grpc_started(self) -> None:
        """Return once the gRPC server runs (or will never), so that stopping it sticks."""
        grpc = self._grpc_server
        if grpc is None:
            return
        deadline = time.monotonic() + GRPC_START_WAIT_SECONDS
        while grpc._server is None and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if grpc._server is not None:
            # Returns at once once it runs; otherwise starts it now, so that kserve's own
            # start finds it running instead of starting it after the stop.
            await grpc._server.start()
