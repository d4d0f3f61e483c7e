"""scripts/render_panel.py against a real server: it drives traffic on every REST route and
draws their request rates and latency quantiles from the server's own histogram."""

from __future__ import annotations

from pathlib import Path

from perf.payloads import ROUTES
from scripts.render_panel import main
from tests.server import ServerProcess

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
