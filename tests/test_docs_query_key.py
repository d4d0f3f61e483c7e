"""The `query_key` recipe in docs/api.md, run as written against the real server.

A client that follows the docs must get the server's `query_key` for the same rows, with
the spellings the canonical form says do not matter: -0.0 for 0.0, ints for floats, keys
in any order, extra keys.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import Any, Final

import httpx
import pytest

from harness.payloads import sample_row
from harness.server import REPO, ServerProcess

API_DOC: Final = REPO / "docs" / "api.md"
SECTION: Final = "**The canonical form and `query_key`.**"

ROW: Final = sample_row()
# JSON texts as a client might send them; each must get the key of its rows' values.
BODIES: Final = {
    "negative zeros": json.dumps(
        [{**ROW, "HouseAge": -0.0, "Latitude": -0.0}, {**ROW, "Longitude": -0.0}]
    ),
    "integer -0": json.dumps([ROW]).replace('"HouseAge": 42.0', '"HouseAge": -0'),
    "ints": json.dumps([{**ROW, "HouseAge": 42, "Population": 322, "Latitude": 38}]),
    "reordered keys and extras": json.dumps(
        [dict(reversed(list({**ROW, "id": "x", "note": None}.items())))]
    ),
    "several rows": json.dumps([ROW, {**ROW, "MedInc": 1e-05}, {**ROW, "Population": 1e16}]),
}


def documented_query_key() -> Callable[[list[dict[str, Any]]], str]:
    """The first Python block after the canonical-form paragraph of docs/api.md, executed."""
    text = API_DOC.read_text(encoding="utf-8")
    assert SECTION in text, f"{API_DOC.name} lost its {SECTION} paragraph"
    block = re.search(r"```python\n(.*?)```", text[text.index(SECTION) :], re.DOTALL)
    assert block is not None, f"no ```python block after {SECTION}"
    namespace: dict[str, Any] = {}
    exec(compile(block.group(1), str(API_DOC), "exec"), namespace)
    function: Callable[[list[dict[str, Any]]], str] = namespace["query_key"]
    return function


def naive_query_key(items: list[dict[str, Any]]) -> str:
    """The recipe without its -0.0 rule: what the docs gave before."""
    features = list(ROW)
    canonical = [{f: float(item[f]) for f in features} for item in items]
    return hashlib.md5(json.dumps(canonical, separators=(",", ":")).encode()).hexdigest()


@pytest.mark.parametrize("body", BODIES.values(), ids=BODIES.keys())
def test_the_documented_recipe_gives_the_servers_query_key(
    server: ServerProcess, body: str
) -> None:
    response = httpx.post(
        server.base_url + "/predict",
        content=body,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    items = json.loads(body)
    assert documented_query_key()(items) == response.json()["query_key"]
    if body == BODIES["negative zeros"]:  # what the -0.0 rule is for: without it, another key
        assert naive_query_key(items) != response.json()["query_key"]
