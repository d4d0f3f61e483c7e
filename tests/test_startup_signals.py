"""SIGTERM at any moment of start-up ends the process cleanly: exit 0, or death by the signal
itself (143 in a shell) before any handler is installed; never a traceback or a crash.

Sixteen points from the first imports to serving (a start takes about 2 s here; later
points are the ordinary shutdown path), four processes at a time.
"""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from harness.server import spawn_server

DELAYS = (0.05, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.2, 2.5, 2.8, 3.2, 4.0)
CLEAN = (0, -signal.SIGTERM)


def signal_after(model_dir: Path, delay: float) -> tuple[float, int, str]:
    server = spawn_server(["--model_dir", str(model_dir)])
    try:
        time.sleep(delay)
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(60)
        return delay, code, server.log()
    finally:
        server.stop(signal.SIGKILL)
        server.log_path.unlink(missing_ok=True)


@pytest.mark.parametrize("delays", [DELAYS[0::2], DELAYS[1::2]], ids=["even", "odd"])
def test_sigterm_at_any_point_of_start_up_exits_cleanly(
    model_dir: Path, delays: tuple[float, ...]
) -> None:
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda d: signal_after(model_dir, d), delays))
    for delay, code, log in results:
        assert code in CLEAN, f"SIGTERM after {delay} s: exit {code}\n{log[-3000:]}"
        for crash in ("Traceback", "Segmentation fault", "Fatal Python error", "core dumped"):
            assert crash not in log, f"SIGTERM after {delay} s:\n{log[-3000:]}"
