"""predictor.server's supervision, as a unit: a gRPC server that ends by itself is built
again (after a back-off that grows, then resets once a server has served a while), REST
serves throughout, a stop signal drains both; REST ending by itself is status 1.

The servers are stand-ins with the methods `Servers` calls (the real ones are exercised in
tests/test_grpc_hostile.py, tests/test_signals.py and tests/test_lifecycle.py); the stop is
a real SIGTERM to this process, caught by the handler `Servers.serve` installs.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import pytest
from prometheus_client import REGISTRY

from predictor import server as server_module
from predictor.metrics import SERVER_RESTARTS
from predictor.server import Servers


class Rest:
    """uvicorn.Server's part that `Servers` uses: `serve()` until `should_exit`."""

    def __init__(self, ends_by_itself: bool = False) -> None:
        self.should_exit = False
        self._ends = ends_by_itself
        self.served = False

    async def serve(self) -> None:
        self.served = True
        while not self.should_exit and not self._ends:
            await asyncio.sleep(0.005)


class Grpc:
    """grpc.aio.Server's part: `start`, `wait_for_termination` (raising when it fails), `stop`."""

    def __init__(self, fails: bool) -> None:
        self._fails = fails
        self._stopped = asyncio.Event()
        self.started = False

    async def start(self) -> None:
        self.started = True

    async def wait_for_termination(self) -> None:
        if self._fails:
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
        await self._stopped.wait()

    async def stop(self, grace: float | None) -> None:
        self._stopped.set()


def run(rest: Rest, failures: int, stop_after: float | None) -> tuple[int, list[Grpc], list[str]]:
    built: list[Grpc] = []
    events: list[str] = []

    def build() -> Any:
        built.append(Grpc(fails=len(built) < failures))
        return built[-1]

    async def starting() -> None:
        events.append("starting")

    async def stopped() -> None:
        events.append("stopped")

    async def main() -> int:
        servers = Servers(
            rest,  # type: ignore[arg-type]
            build,
            grace_seconds=1,
            max_asyncio_workers=2,
            starting=starting,
            draining=lambda: events.append("draining"),
            stopped=stopped,
        )
        if stop_after is not None:
            asyncio.get_running_loop().call_later(stop_after, os.kill, os.getpid(), signal.SIGTERM)
        return await servers.serve()

    return asyncio.run(main()), built, events


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_module, "GRPC_RESTART_SECONDS", (0.01, 0.02, 0.04))


def restarts() -> float:
    """`housing_server_restarts_total{server="grpc"}`, as a scrape reads it."""
    SERVER_RESTARTS.labels("grpc")  # the child exists from the first read on
    value = REGISTRY.get_sample_value("housing_server_restarts_total", {"server": "grpc"})
    assert value is not None
    return value


def test_a_failing_grpc_server_is_built_again_while_rest_serves() -> None:
    before = restarts()
    rest = Rest()
    status, built, events = run(rest, failures=3, stop_after=0.5)
    assert status == 0
    assert len(built) == 4 and all(server.started for server in built)
    assert restarts() - before == 3
    assert rest.served and rest.should_exit
    assert events == ["starting", "draining", "stopped"]


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The back-off pauses `Servers` waits, in order (it waits on the stop event with them)."""
    seen: list[float] = []
    wait_for = asyncio.wait_for

    async def timed(awaitable: Any, timeout: float | None) -> Any:
        seen.append(timeout or 0.0)
        return await wait_for(awaitable, timeout)

    monkeypatch.setattr(server_module.asyncio, "wait_for", timed)
    return seen


def test_the_back_off_grows_between_failures(pauses: list[float]) -> None:
    run(Rest(), failures=4, stop_after=0.6)
    assert pauses[:4] == [0.01, 0.02, 0.04, 0.04]


def test_the_back_off_starts_again_after_a_healthy_run(
    pauses: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "GRPC_HEALTHY_SECONDS", 0.0)  # every run counts as long
    run(Rest(), failures=3, stop_after=0.5)
    assert pauses[:3] == [0.01, 0.01, 0.01]


def test_rest_ending_by_itself_stops_the_process_with_status_1() -> None:
    status, built, events = run(Rest(ends_by_itself=True), failures=0, stop_after=None)
    assert status == 1
    assert events == ["starting", "draining", "stopped"]
    assert len(built) == 1
