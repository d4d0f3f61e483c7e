"""Run `python -m predictor` as a real subprocess on free ports, for tests and benchmarks."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from harness.paths import REPO
from harness.pinning import pinned

READY_TIMEOUT_SECONDS = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int
    log_path: Path
    model_name: str = "housing"
    _closed: bool = field(default=False, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        url = f"{self.base_url}/v1/models/{self.model_name}"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.process.returncode}:\n{self.log()[-4000:]}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"server not ready after {timeout}s:\n{self.log()[-4000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal the server and wait for it to exit; return its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def spawn_server(
    args: Sequence[str],
    env: Mapping[str, str] | None = None,
    http_port: int | None = None,
    grpc_port: int | None = None,
    cpus: Sequence[int] | None = None,
) -> ServerProcess:
    """Start `python -m predictor ARGS --http_port P --grpc_port Q` without waiting; with
    `cpus`, pinned to those CPUs (`taskset`)."""
    http_port = http_port or free_port()
    grpc_port = grpc_port or free_port()
    log = Path(tempfile.mkstemp(prefix="predictor-", suffix=".log")[1])
    command = pinned([sys.executable, "-m", "predictor", *args], cpus)
    command += ["--http_port", str(http_port), "--grpc_port", str(grpc_port)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env={**os.environ, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return ServerProcess(process, http_port, grpc_port, log)


@contextlib.contextmanager
def start_server(
    args: Sequence[str],
    env: Mapping[str, str] | None = None,
    http_port: int | None = None,
    grpc_port: int | None = None,
) -> Iterator[ServerProcess]:
    """Start the server, wait until its readiness path answers 200, stop it afterwards."""
    server = spawn_server(args, env, http_port, grpc_port)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
        server.log_path.unlink(missing_ok=True)
