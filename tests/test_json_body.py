"""Unit tests of the strict JSON parser: duplicates at any depth, NaN/Infinity, nesting."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.payloads import load_json
from predictor.protocol.json_body import MAX_DEPTH, InvalidJson, loads_strict


@dataclass(frozen=True)
class Key:
    """An object key, and whether to write each of its characters as a \\uXXXX escape."""

    text: str
    escaped: bool


@dataclass(frozen=True)
class Obj:
    """A JSON object as written: its members in order, repeated keys allowed."""

    members: tuple[tuple[Key, Any], ...]


# Few distinct characters, so keys often repeat, and the ones that upset cheap counting
# (colons, brackets, braces, backslashes, quotes) are common.
_ALPHABET = 'aM:{[]}\\"é'
_text = st.text(alphabet=_ALPHABET, max_size=3)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
)
_documents = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(st.tuples(st.builds(Key, _text, st.booleans()), inner), max_size=4).map(
            lambda members: Obj(tuple(members))
        )
    ),
    max_leaves=12,
)
_separators = st.sampled_from([(",", ":"), (", ", ": "), (" ,\n", "\t: ")])


def write(node: Any, separators: tuple[str, str]) -> str:
    comma, colon = separators
    if isinstance(node, Obj):
        members = (
            f"{write_key(key)}{colon}{write(value, separators)}" for key, value in node.members
        )
        return "{" + comma.join(members) + "}"
    if isinstance(node, list):
        return "[" + comma.join(write(item, separators) for item in node) + "]"
    return json.dumps(node)


def write_key(key: Key) -> str:
    if key.escaped:
        return '"' + "".join(f"\\u{ord(c):04x}" for c in key.text) + '"'
    return json.dumps(key.text, ensure_ascii=False)


def repeated_keys(node: Any) -> set[str]:
    """Every key that some object of the document names twice."""
    found: set[str] = set()
    if isinstance(node, Obj):
        names = [key.text for key, _ in node.members]
        found |= {name for name in names if names.count(name) > 1}
        for _, value in node.members:
            found |= repeated_keys(value)
    elif isinstance(node, list):
        for item in node:
            found |= repeated_keys(item)
    return found


@settings(max_examples=400, derandomize=True)
@given(_documents, _separators)
def test_refuses_exactly_the_documents_with_a_repeated_key(
    document: Any, separators: tuple[str, str]
) -> None:
    body = write(document, separators).encode()
    repeated = repeated_keys(document)
    if not repeated:
        assert loads_strict(body) == orjson.loads(body)
        return
    with pytest.raises(InvalidJson, match="duplicate key") as e:
        loads_strict(body)
    assert any(repr(key) in str(e.value) for key in repeated)


def sample_rows(count: int) -> list[dict[str, Any]]:
    sample: list[dict[str, Any]] = load_json("sample.json")
    return [dict(sample[i % len(sample)], id=i) for i in range(count)]


@pytest.mark.parametrize("rows", [1, 1000], ids=["one row", "1000 rows"])
@pytest.mark.parametrize("wrap", ["legacy", "v1"])
@pytest.mark.parametrize(
    "duplicate",
    [', "MedInc": 1.0', ', "Med\\u0049nc": 1.0', ', "note": "a:b", "MedInc": 1.0'],
    ids=["plain", "escaped", "after a colon in a string"],
)
def test_a_duplicate_in_the_last_row_is_found(rows: int, wrap: str, duplicate: str) -> None:
    text = json.dumps(sample_rows(rows))
    assert text.endswith("}]")
    text = text[:-2] + duplicate + "}]"
    if wrap == "v1":
        text = f'{{"instances": {text}}}'
    with pytest.raises(InvalidJson, match="duplicate key 'MedInc'"):
        loads_strict(text.encode())


@pytest.mark.parametrize("rows", [1, 1000], ids=["one row", "1000 rows"])
@pytest.mark.parametrize(
    "extra",
    [{}, {"note": "a:b{["}, {"note": "x\\y"}, {"meta": {"a": [1, {"b": None}]}}],
    ids=["plain", "colon in a string", "escape", "nested object"],
)
def test_bodies_without_duplicates_parse_as_orjson_does(rows: int, extra: dict[str, Any]) -> None:
    for body in (
        orjson.dumps([{**row, **extra} for row in sample_rows(rows)]),
        orjson.dumps({"instances": [[*row.values(), extra] for row in sample_rows(rows)]}),
    ):
        assert loads_strict(body) == orjson.loads(body)


def nested(depth: int, inner: str = "1") -> bytes:
    return ("[" * depth + inner + "]" * depth).encode()


def test_nesting_up_to_max_depth_is_accepted_and_deeper_is_refused() -> None:
    assert loads_strict(nested(MAX_DEPTH)) == orjson.loads(nested(MAX_DEPTH))
    as_objects = ('{"a":' * MAX_DEPTH + "1" + "}" * MAX_DEPTH).encode()
    assert loads_strict(as_objects) == orjson.loads(as_objects)
    # Brackets inside strings stop the walk from finishing early; depth still counts.
    assert loads_strict(nested(MAX_DEPTH, '"[[[["')) == orjson.loads(nested(MAX_DEPTH, '"[[[["'))
    for body in (
        nested(MAX_DEPTH + 1),
        nested(MAX_DEPTH + 1, '"[[[["'),
        ('{"a":' * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1)).encode(),
    ):
        with pytest.raises(InvalidJson, match=f"nested more than {MAX_DEPTH} levels"):
            loads_strict(body)
    with pytest.raises(InvalidJson, match="depth limit exceeded"):
        loads_strict(nested(10_000))


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "-NaN"])
def test_nan_and_infinity_are_named(literal: str) -> None:
    with pytest.raises(InvalidJson, match=r"NaN and Infinity are not JSON numbers \(line 1 "):
        loads_strict(f'[{{"MedInc": {literal}}}]'.encode())


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "Input is a zero-length, empty document"),
        (b'[{"MedInc": 1,', "unexpected end of data"),
        (b"[1e400]", "number is infinity when parsed as double"),
        (b"[1] [2]", "unexpected content after document"),
        (b"\xff", "str is not valid UTF-8"),
    ],
)
def test_malformed_json_says_where(body: bytes, message: str) -> None:
    with pytest.raises(InvalidJson, match=r"\(line 1 column \d+\)") as e:
        loads_strict(body)
    assert str(e.value).startswith(message)


def test_scalars_and_empty_containers_parse() -> None:
    for body in (b"1", b'"a:b"', b"null", b"[]", b"{}", b'{"a": {}}'):
        assert loads_strict(body) == orjson.loads(body)


def test_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        loads_strict(b'{"a": 1, "a": 2}')
