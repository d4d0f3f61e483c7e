"""A private `redis-server` on a free port in a temp dir, that tests may stop, kill, pause.

The machine's shared Redis (127.0.0.1:6379) is never touched: every test or benchmark that
needs a Redis, or breaks one, starts its own.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import redis

from harness.pinning import pinned
from harness.server import free_port
from harness.system_tools import require_tool

READY_TIMEOUT_SECONDS = 10.0


class RedisServer:
    """One redis-server process; `restart` brings it back on the same port, empty."""

    def __init__(
        self, directory: Path, password: str | None = None, cpus: Sequence[int] | None = None
    ) -> None:
        self.directory = directory
        self.password = password
        self.cpus = cpus
        self.port = free_port()
        self.extra_args: list[str] = []
        """More redis-server options (cluster mode, replicaof)."""
        self.config_file: Path | None = None
        """A sentinel's config file: set, the server runs as a sentinel (which saves its
        state there), with the port, bind and dir the file names."""
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A plain synchronous client, for tests to look at or seed the data."""
        return redis.Redis(port=self.port, password=self.password, socket_timeout=5)

    def start(self) -> None:
        executable = require_tool("redis-server", "for the tests of the Redis tier")
        if self.config_file is not None:
            command = [executable, str(self.config_file), "--sentinel"]
        else:
            command = [executable, "--port", str(self.port), "--bind", "127.0.0.1"]
            command += ["--dir", str(self.directory), "--save", "", "--appendonly", "no"]
            command += self.extra_args
        if self.password is not None:
            command += ["--requirepass", self.password]
        with (self.directory / "redis.log").open("ab") as log:
            self._process = subprocess.Popen(
                pinned(command, self.cpus), stdout=log, stderr=subprocess.STDOUT
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        with self.client() as client:
            while time.monotonic() < deadline:
                if not self.running:  # e.g. its port was taken meanwhile
                    break
                with contextlib.suppress(redis.ConnectionError):
                    client.ping()
                    return
                time.sleep(0.02)
        raise TimeoutError(f"redis-server on port {self.port} did not start")

    def kill(self) -> None:
        """SIGKILL: connections are reset, nothing is flushed."""
        self._signal_and_wait(signal.SIGKILL)

    def stop(self) -> None:
        self._signal_and_wait(signal.SIGTERM)

    def pause(self) -> None:
        """SIGSTOP: connections stay open and nothing answers (a hung Redis)."""
        self._send(signal.SIGSTOP)

    def resume(self) -> None:
        self._send(signal.SIGCONT)

    def restart(self) -> None:
        self.kill()
        self.start()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _send(self, sig: int) -> None:
        assert self._process is not None, "redis-server is not running"
        self._process.send_signal(sig)

    def _signal_and_wait(self, sig: int) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGCONT)  # a paused server cannot exit on TERM
            self._process.send_signal(sig)
            self._process.wait(timeout=10)
        self._process = None


@contextlib.contextmanager
def running_redis(
    directory: Path, password: str | None = None, cpus: Sequence[int] | None = None
) -> Iterator[RedisServer]:
    server = RedisServer(directory, password, cpus)
    server.start()
    try:
        yield server
    finally:
        server.kill()
