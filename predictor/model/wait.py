"""Wait for a model directory that appears after the server starts (KServe's async init).

KServe sets `MODEL_INIT_MODE=async` on the serving container when the model comes from a
modelcar (`storageUri: oci://...`): the `modelcar` sidecar, which starts after the server
container, makes `/mnt/models` a symlink into its own root through `/proc/<pid>/root`, so the
directory may not exist yet when the server looks. Instead of exiting and being restarted
with back-off, the server polls for the model's metadata for a bounded time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from predictor.model.artifact import METADATA_NAME

POLL_SECONDS: Final = 0.05


def wait_for_model_dir(
    model_dir: Path,
    timeout_seconds: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """True as soon as `model_dir` holds its metadata file, False once `timeout_seconds`
    have passed without it (the caller's load then says what is missing)."""
    deadline = clock() + timeout_seconds
    while not (model_dir / METADATA_NAME).is_file():
        if clock() >= deadline:
            return False
        sleep(POLL_SECONDS)
    return True
