"""scripts/render_panel.py against a real server: it drives traffic on every REST route and
draws their request rates and latency quantiles from the server's own histogram."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.payloads import ROUTES
from harness.server import REPO, ServerProcess
from scripts.render_panel import DEFAULT_OUT, main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_renders_every_routes_rate_and_quantiles(server: ServerProcess, tmp_path: Path) -> None:
    out = tmp_path / "panel.png"
    args = ["--url", server.base_url, "--out", str(out), "--seconds", "3", "--step", "0.5"]
    series = main([*args, "--window", "1", "--rate", "20"])
    assert out.read_bytes().startswith(PNG_SIGNATURE)
    assert set(ROUTES) <= set(series)
    for route in ROUTES:
        data = series[route]
        assert data.seconds and len(data.requests_per_s) == len(data.seconds)
        assert max(data.requests_per_s) > 0, route
        assert any(ms is not None and ms > 0 for ms in data.quantiles_ms[50]), route
        for quantiles in zip(*(data.quantiles_ms[p] for p in (50, 90, 95, 99)), strict=True):
            known = [q for q in quantiles if q is not None]
            assert known == sorted(known), f"{route}: quantiles out of order {quantiles}"


@pytest.mark.parametrize(
    "how", [[str(REPO / "scripts" / "render_panel.py")], ["-m", "scripts.render_panel"]]
)
def test_runs_as_a_path_or_a_module_and_writes_to_an_ignored_dir(how: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, *how, "--help"], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    relative = DEFAULT_OUT.relative_to(REPO)
    assert str(relative) in done.stdout.replace("\n", "").replace(" ", "")
    ignored = subprocess.run(["git", "check-ignore", "-q", str(relative)], cwd=REPO)
    assert ignored.returncode == 0, f"{relative} is not ignored by git"
