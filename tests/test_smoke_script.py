"""The operator's smoke test, run against a real server: it passes, says what it checked,
and it can fail."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from harness.payloads import load_json
from harness.server import REPO, ServerProcess

AS_PATH = ["scripts/smoke.py"]
AS_MODULE = ["-m", "scripts.smoke"]


def smoke(*args: str, how: list[str] = AS_PATH) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *how, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("how", [AS_PATH, AS_MODULE], ids=["path", "module"])
def test_smoke_passes_and_prints_what_each_check_sent_and_got(
    server: ServerProcess, how: list[str]
) -> None:
    result = smoke(server.base_url, "--grpc", server.grpc_target, how=how)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    sent = [line.removeprefix("ok   ").split(" -> ")[0] for line in lines]
    assert all(line.startswith("ok   ") and " -> " in line for line in lines), lines
    assert sent[:4] == [
        "GET /v1/models/housing",
        "GET /v2/health/live",
        "GET /v2/health/ready",
        "GET /v2/models/housing",
    ]
    assert any(s.startswith("POST /v2/models/housing/infer") for s in sent)
    assert sent[-1].startswith(f"gRPC ModelInfer to {server.grpc_target}")
    legacy = next(line for line in lines if "POST /predict with 4 rows" in line)
    expected = httpx.post(server.base_url + "/predict", json=load_json("sample.json")).json()
    assert f"query_key {expected['query_key']}" in legacy
    assert "422 " in next(line for line in lines if "MedInc -1" in line)


def test_smoke_fails_loudly_on_a_wrong_deployment(server: ServerProcess) -> None:
    result = smoke(server.base_url, "--model", "not-housing")
    assert result.returncode == 1
    assert result.stderr.startswith("FAIL GET /v1/models/not-housing: 404")
