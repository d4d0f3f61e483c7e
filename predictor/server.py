"""kserve's ModelServer with our HTTP protocol, app, repository extension and signal handling.

uvicorn serves the project's app (predictor.app, given with `serve_app`) in front of
kserve's. Three changes to kserve's `ModelServer`, each at a hook kserve itself calls:

- uvicorn speaks `predictor.limits`' bounded protocol (set in `_serve`, before uvicorn
  loads its config);
- the model repository extension is the one given (predictor.upstream.kserve_repository:
  off by default);
- SIGTERM, SIGINT and SIGQUIT stop the server cleanly at any moment of start-up. kserve's
  handler creates a task, which raises when the event loop is not running yet (a crash
  with a traceback), and may stop the gRPC server before it started (which then serves
  on). Here a signal before the loop runs ends `_serve` at once; one while the servers
  start tells uvicorn to exit and stops gRPC once it is up. While uvicorn serves, its own
  handler has the signal, then hands it back here when it is done (uvicorn re-raises it),
  as with kserve's.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from types import FrameType
from typing import Any, Final

from kserve import ModelServer
from kserve.logging import logger
from kserve.protocol.model_repository_extension import ModelRepositoryExtension
from starlette.types import ASGIApp

from predictor.limits import protocol_factory
from predictor.settings import ConnectionLimits
from predictor.upstream.kserve_rest_app import serve_app

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
        self._app: ASGIApp | None = None

    def serve_app(self, app: ASGIApp) -> None:
        """Serve `app` over REST (predictor.app) in front of kserve's."""
        self._app = app

    def register_signal_handler(self) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._on_signal)

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
        if self._rest_server is not None:
            self._rest_server.config.http = protocol_factory(self._limits)
            if self._app is not None:
                serve_app(self._rest_server, self._app)
        if self._early_signal is not None:
            logger.info("Stopped during start-up (signal %d)", self._early_signal)
            for server in self.servers:
                server.close()  # coroutines never started
            return
        await asyncio.gather(*self.servers)
        if self._stopping is not None:
            await self._stopping

    def _begin_stop(self, sig: int) -> None:
        if self._stopping is not None:
            return
        if self._rest_server is not None:
            self._rest_server._server.should_exit = True
        self._stopping = asyncio.get_running_loop().create_task(self._stop(sig))

    async def _stop(self, sig: int) -> None:
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
