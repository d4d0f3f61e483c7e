"""Unit tests of canonical keys: what a client can compute, and what must not change a key."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from harness.payloads import load_json
from predictor.cache.keys import canonical_rows, query_key, row_digests
from predictor.protocol.schema import FEATURES, InvalidRows, validate_objects


def client_side_query_key(items: list[dict[str, Any]]) -> str:
    """The recipe documented in docs/api.md and in predictor/cache/keys.py."""
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


def valid_value(name: str) -> st.SearchStrategy[float]:
    """Any value `HousingFeatures` accepts for `name`: its own bounds, finite."""
    bounds = {"Latitude": 90.0, "Longitude": 180.0}
    if name in bounds:
        return st.floats(-bounds[name], bounds[name])
    return st.floats(min_value=0.0, exclude_min=name != "HouseAge", allow_infinity=False)


valid_rows = st.fixed_dictionaries({name: valid_value(name) for name in FEATURES})


@given(valid_rows, st.permutations(FEATURES), st.dictionaries(st.text(max_size=5), st.integers()))
def test_key_ignores_field_order_extra_keys_and_integer_spelling(
    row: dict[str, float], order: list[str], extra: dict[str, int]
) -> None:
    spelled = {
        name: int(row[name]) if row[name].is_integer() and abs(row[name]) < 2**53 else row[name]
        for name in order
    }
    variant = {**{k: v for k, v in extra.items() if k not in FEATURES}, **spelled}
    assert key_of([variant]) == key_of([row])


@given(valid_rows, st.sampled_from(FEATURES))
def test_canonical_form_reads_back_exactly_and_tells_neighbours_apart(
    row: dict[str, float], name: str
) -> None:
    [text] = canonical_rows(validate_objects([row]))
    assert list(json.loads(text)) == list(FEATURES)
    read = json.loads(text)
    assert read == {f: float(row[f]) for f in FEATURES}
    assert all(math.copysign(1.0, v) > 0 for v in read.values() if v == 0)  # never -0.0
    neighbour = {**row, name: math.nextafter(row[name], math.inf)}
    try:
        [other] = canonical_rows(validate_objects([neighbour]))
    except InvalidRows:  # the next double is past the bound
        return
    assert row_digests([other]) != row_digests([text])
