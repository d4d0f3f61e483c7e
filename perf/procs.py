"""Start, time and stop the servers under test: this project, its peers and a private Redis.

Every process logs to a file in the work directory and is stopped by its own handle, never
by name. The predictor and Redis are started through the harness, as the tests start them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import httpx

from harness.cpu import tree_cpu_seconds
from harness.payloads import MODEL_NAME, REPO
from harness.pinning import pinned
from harness.promtext import Scrape, cache_hit_ratio, delta, scrape
from harness.redis_server import running_redis
from harness.server import free_port, spawn_server

READY_TIMEOUT_SECONDS: Final = 120.0
# Readiness is polled this often, so that start-up times are measured to a few milliseconds.
POLL_SECONDS: Final = 0.005
STOP_TIMEOUT_SECONDS: Final = 20.0
PREDICTOR_READY_PATH: Final = f"/v1/models/{MODEL_NAME}"
GC_COUNTER: Final = "python_gc_collections_total"


@dataclass
class Service:
    """A server process: where it listens, where it logs, and when it was started."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    started_at: float
    """`time.perf_counter()` just before the process was spawned."""
    grpc_port: int = 0
    """The gRPC port, for this project's server (0: none known)."""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def check_running(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}"
            )

    def wait_http_ready(self, path: str, timeout: float = READY_TIMEOUT_SECONDS) -> float:
        """Poll `GET path` until it answers 200; return seconds since the process started."""
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.base_url, timeout=1.0) as client:
            while time.monotonic() < deadline:
                self.check_running()
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(path).status_code == 200:
                        return time.perf_counter() - self.started_at
                time.sleep(POLL_SECONDS)
        raise TimeoutError(f"{self.name} not ready after {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def spawn(
    name: str,
    command: Sequence[str],
    port: int,
    work_dir: Path,
    env: Mapping[str, str] | None = None,
    cpus: Sequence[int] | None = None,
) -> Service:
    """Start `command` in the repository root (on `cpus` if given), its output in
    `work_dir/<name>.log`."""
    log_path = work_dir / f"{name}.log"
    started_at = time.perf_counter()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            pinned(command, cpus),
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    return Service(name, process, port, log_path, started_at)


def spawn_predictor(
    model_dir: Path,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    cpus: Sequence[int] | None = None,
) -> Service:
    """`python -m predictor --model_dir DIR` on free ports (harness.server.spawn_server), on
    `cpus` if given."""
    started_at = time.perf_counter()
    server = spawn_server(["--model_dir", str(model_dir), *extra_args], env, cpus=cpus)
    return Service(
        "predictor",
        server.process,
        server.http_port,
        server.log_path,
        started_at,
        server.grpc_port,
    )


def spawn_python_module(
    name: str,
    module: str,
    args: Sequence[str],
    work_dir: Path,
    env: Mapping[str, str] | None = None,
    cpus: Sequence[int] | None = None,
) -> Service:
    """`python -m MODULE ARGS --http_port P --grpc_port Q`, for the kserve peers."""
    port = free_port()
    command = [sys.executable, "-m", module, *args]
    command += ["--http_port", str(port), "--grpc_port", str(free_port())]
    return spawn(name, command, port, work_dir, env, cpus)


def spawn_raw_asgi(work_dir: Path, cpus: Sequence[int] | None = None) -> Service:
    """The ceiling: `perf.peers.raw_asgi` under uvicorn with httptools and uvloop."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "perf.peers.raw_asgi:app", "--port", str(port)]
    command += ["--http", "httptools", "--loop", "uvloop", "--no-access-log"]
    return spawn("raw-asgi", [*command, "--log-level", "warning"], port, work_dir, cpus=cpus)


@contextlib.contextmanager
def running(service: Service, ready_path: str) -> Iterator[Service]:
    """Wait until `service` answers on `ready_path`; stop it on the way out."""
    try:
        service.wait_http_ready(ready_path)
        yield service
    finally:
        service.stop()


@contextlib.contextmanager
def private_redis(work_dir: Path, cpus: Sequence[int] | None = None) -> Iterator[str]:
    """A throwaway `redis-server` on a free port (no persistence, harness.redis_server),
    on `cpus` if given; yields its URL."""
    with running_redis(work_dir, cpus=cpus) as server:
        yield server.url


@dataclass
class Observation:
    """What a server did during a load run: its CPU use and its /metrics before and after."""

    cores: float = 0.0
    before: Scrape = field(default_factory=list)
    after: Scrape = field(default_factory=list)

    @property
    def hit_ratio(self) -> float | None:
        return cache_hit_ratio(self.before, self.after)

    @property
    def full_gcs(self) -> int | None:
        """Full (generation 2) garbage collections of the server, from its /metrics."""
        if not self.after:
            return None
        return round(delta(self.before, self.after, GC_COUNTER, {"generation": "2"}))


@contextlib.contextmanager
def observe(service: Service, metrics: bool = True) -> Iterator[Observation]:
    """Measure `service`'s CPU (in cores) over the block, and scrape its /metrics around it."""
    seen = Observation(before=scrape(service.base_url) if metrics else [])
    cpu, wall = tree_cpu_seconds(service.pid), time.perf_counter()
    yield seen
    seen.cores = (tree_cpu_seconds(service.pid) - cpu) / (time.perf_counter() - wall)
    seen.after = scrape(service.base_url) if metrics else []
