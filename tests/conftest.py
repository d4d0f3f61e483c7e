"""Fixture chain: shared data → a model trained by the real CLI → a running server → clients."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness.payloads import sample_rows
from harness.server import REPO, ServerProcess, start_server

pytest_plugins = ["tests.missing_tools"]

# Where a checkout sits next to shared/ (as here and in CI); HOUSING_DATA=PATH overrides it.
DATA_PATH = REPO.parent / "shared" / "data" / "cal_housing.data"


@pytest.fixture(scope="session")
def data_path() -> Path:
    path = Path(os.environ.get("HOUSING_DATA") or DATA_PATH)
    if not path.is_file():
        pytest.fail(
            f"{path} is missing: the tests train from the StatLib file cal_housing.data "
            "(the California housing data); put it there or run "
            "`make test HOUSING_DATA=/path/to/cal_housing.data`"
        )
    return path


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory, data_path: Path) -> Path:
    """The default (hgb) model, trained once per session with the real training CLI."""
    directory = tmp_path_factory.mktemp("model")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "predictor.train",
            "--model_dir",
            str(directory),
            "--data",
            str(data_path),
        ],
        check=True,
        cwd=REPO,
    )
    return directory


@pytest.fixture(scope="session")
def server(model_dir: Path) -> Iterator[ServerProcess]:
    """One server with the in-process cache, shared by the tests that only read from it."""
    with start_server(["--model_dir", str(model_dir), "--max_batch_size", "1000"]) as running:
        yield running


@pytest.fixture()
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30.0) as c:
        yield c


@pytest.fixture()
def sample() -> list[dict[str, float]]:
    return sample_rows()
