"""uvicorn's `Server`, leaving the process's signals to predictor.server.

`uvicorn.Server.serve` installs its own SIGINT and SIGTERM handlers for as long as it
serves, and re-raises the signals it caught once it is done. predictor.server owns the
signals of the whole process (REST and gRPC drain in one order, SIGQUIT and SIGHUP too)
and tells uvicorn to exit through `should_exit`; so here `capture_signals`, the hook
`serve` calls, installs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator

import uvicorn
from starlette.types import Receive, Scope, Send


class OwnedSignalsServer(uvicorn.Server):
    """`uvicorn.Server` that installs no signal handlers (see the module docstring)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def check_upstream() -> None:
    """What this module relies on: `serve` takes SIGTERM for itself through
    `capture_signals`, so that overriding it leaves the process's handler in place."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        pass

    def handler_while_serving(server_class: type[uvicorn.Server]) -> object:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_config=None)
        server = server_class(config)
        seen: list[object] = []

        async def serve() -> None:
            task = asyncio.ensure_future(server.serve())
            while not server.started and not task.done():
                await asyncio.sleep(0.01)
            seen.append(signal.getsignal(signal.SIGTERM))
            server.should_exit = True
            await task

        asyncio.run(serve())
        return seen[0]

    def mine(sig: int, frame: object) -> None:
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        assert handler_while_serving(uvicorn.Server) is not mine, "uvicorn takes SIGTERM"
        assert handler_while_serving(OwnedSignalsServer) is mine, "capture_signals is the hook"
    finally:
        signal.signal(signal.SIGTERM, previous)
