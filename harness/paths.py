"""Where the checkout and its test data are (the harness is installed editable from it)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

REPO: Final = Path(__file__).resolve().parents[1]
TEST_DATA: Final = REPO / "tests" / "data"
SAMPLE_PATH: Final = TEST_DATA / "sample.json"
