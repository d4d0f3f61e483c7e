"""Unit tests of canonical keys: what a client can compute, and what must not change a key."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from predictor.keys import canonical_rows, query_key, row_digests
from predictor.schema import FEATURES, validate_objects
from tests.conftest import load_json


def client_side_query_key(items: list[dict[str, Any]]) -> str:
    """The recipe documented in the README and in predictor/keys.py."""
    canonical = [{f: float(item[f]) for f in FEATURES} for item in items]
    return hashlib.md5(json.dumps(canonical, separators=(",", ":")).encode()).hexdigest()


def key_of(items: list[dict[str, Any]]) -> str:
    return query_key(canonical_rows(validate_objects(items)))


def test_documented_recipe_gives_the_server_key() -> None:
    sample = load_json("sample.json")
    assert key_of(sample) == client_side_query_key(sample)
    assert len(key_of(sample)) == 32


def test_canonical_row_text() -> None:
    rows = validate_objects(load_json("sample.json")[:1])
    assert canonical_rows(rows) == [
        '{"MedInc":8.3252,"HouseAge":42.0,"AveRooms":6.98,"AveBedrms":1.02,'
        '"Population":322.0,"AveOccup":2.55,"Latitude":37.88,"Longitude":-122.23}'
    ]


def test_order_extra_keys_and_int_spelling_do_not_change_keys() -> None:
    sample = load_json("sample.json")
    reordered = [dict(reversed(list(item.items()))) for item in sample]
    extra = [{**item, "id": n, "note": "x"} for n, item in enumerate(sample)]
    as_floats = [{k: float(v) for k, v in item.items()} for item in sample]
    keys = {key_of(variant) for variant in (sample, reordered, extra, as_floats)}
    assert len(keys) == 1


def test_row_digests_are_per_row_and_order_matters_for_the_query_key() -> None:
    sample = load_json("sample.json")
    rows = canonical_rows(validate_objects(sample))
    flipped = canonical_rows(validate_objects(sample[::-1]))
    assert row_digests(rows) == row_digests(flipped)[::-1]
    assert len(set(row_digests(rows))) == len(sample)
    assert query_key(rows) != query_key(flipped)


positive = st.floats(min_value=1e-300, max_value=1e300, allow_nan=False)


@given(st.lists(st.fixed_dictionaries({f: positive for f in FEATURES}), min_size=1, max_size=4))
def test_server_key_matches_client_recipe(items: list[dict[str, float]]) -> None:
    for item in items:
        item["Latitude"] = item["Latitude"] % 90
        item["Longitude"] = item["Longitude"] % 180
    assert key_of(items) == client_side_query_key(items)
