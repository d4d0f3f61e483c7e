"""The operator's smoke test, run against a real server: it passes, and it can fail."""

from __future__ import annotations

import subprocess
import sys

from tests.server import REPO, ServerProcess


def smoke(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "scripts/smoke.py", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_smoke_passes_on_every_route(server: ServerProcess) -> None:
    result = smoke(server.base_url, "--grpc", server.grpc_target)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["ok   HTTP routes", "ok   gRPC"]


def test_smoke_fails_loudly_on_a_wrong_deployment(server: ServerProcess) -> None:
    result = smoke(server.base_url, "--model", "not-housing")
    assert result.returncode == 1
    assert "FAIL HTTP routes" in result.stderr
