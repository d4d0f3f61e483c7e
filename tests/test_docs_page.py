"""`/docs` as people use it: Swagger UI in a real headless Chromium, served entirely by the
server itself (no CDN), whose "Try it out" gets the same answer as `POST /predict`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from harness.server import ServerProcess
from tests.docs_browser import find_executables, try_it_out


def test_docs_page_and_its_assets_come_from_the_server(client: httpx.Client) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources, page.text
    for source in sources:
        assert "//" not in source, f"{source}: the page must not load anything from elsewhere"
        asset = client.get(f"/{source}")
        assert asset.status_code == 200, source
        assert asset.content, source
    assert 'url: "openapi/housing.json"' in page.text
    assert client.get("/openapi/housing.json").json()["openapi"].startswith("3.1")


def test_try_it_out_in_chromium_gets_the_legacy_answer(
    server: ServerProcess, client: httpx.Client, tmp_path: Path
) -> None:
    executables = find_executables()
    if executables is None:
        pytest.skip(
            "chromium and chromedriver are not installed "
            "(apt-get install -y chromium chromium-driver; .ci/run installs them)"
        )
    tried = try_it_out(executables, server.base_url, tmp_path / "docs.png")
    assert tried.status == "200", tried.body
    example = client.get("/openapi/housing.json").json()["paths"]["/predict"]["post"]
    sample = example["requestBody"]["content"]["application/json"]["example"]
    assert json.loads(tried.body) == client.post("/predict", json=sample).json()
    assert "/predict" in tried.curl
    assert (tmp_path / "docs.png").stat().st_size > 10_000
