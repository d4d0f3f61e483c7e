"""Strict JSON request bodies: orjson's parse, minus what orjson lets through silently.

orjson keeps the last of two equal keys (`{"MedInc": 8, "MedInc": 1}` is `{"MedInc": 1}`),
which would predict for a row the client did not mean. `loads_strict` refuses such bodies,
refuses nesting deeper than `MAX_DEPTH`, and says plainly why NaN and Infinity fail.

The checks cost little on ordinary bodies (about 1.5 µs on a one-row `/predict` body, a
third of orjson's own time on 1000 rows). Every member of an object is written with a
colon, so when the body holds no more colons than the parsed objects hold keys, no key can
have been dropped. Likewise, when the body holds no more `{` and `[` than a walk of the top
levels found objects and arrays, the walk saw every container, which bounds the depth.
Both counts include characters inside strings, so they can only overestimate: a mismatch
never lets a duplicate through. It sends the body to slower checks: re-serialising the
parsed value, whose colons must then number the body's (exact when the body has no escape
sequence, as its strings then decode to themselves), and last a full parse with a hook
that sees every key (about 10 times orjson's time), which also names the duplicate.
"""

from __future__ import annotations

import json
from typing import Any, Final

import numpy as np
import orjson

MAX_DEPTH: Final = 32
"""Deepest nesting of arrays and objects accepted; request bodies need 3 (V1 arrays)."""

# Below this size bytes.count is faster than numpy for counting three characters.
_NUMPY_MIN_BYTES: Final = 8192
_COLON, _BRACE, _BRACKET = ord(":"), ord("{"), ord("[")
_NON_FINITE: Final = ("NaN", "Infinity")
_CONTAINERS: Final = (dict, list)


class InvalidJson(ValueError):
    """The body is not JSON we accept. The message says why, for the client, to follow
    "malformed JSON: " (it does not repeat it)."""


def loads_strict(body: bytes) -> Any:
    """Parse a JSON body with orjson; refuse duplicate keys, NaN/Infinity and deep nesting."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise InvalidJson(_describe(e)) from e
    if not isinstance(value, dict | list):
        return value
    colons, braces, brackets = _count_structural(body)
    if _walk(value, braces, brackets) != colons and not _same_colons_reserialized(
        body, value, colons
    ):
        json.loads(body, object_pairs_hook=_unique_keys)
    return value


def _describe(error: orjson.JSONDecodeError) -> str:
    where = f"line {error.lineno} column {error.colno}"
    # orjson stops at the N or the I (after any minus sign) of NaN and Infinity.
    if error.doc.startswith(_NON_FINITE, error.pos):
        return f"NaN and Infinity are not JSON numbers ({where})"
    return f"{error.msg} ({where})"


def _count_structural(body: bytes) -> tuple[int, int, int]:
    """How many `:`, `{` and `[` the body holds, inside strings too."""
    if len(body) < _NUMPY_MIN_BYTES:
        return body.count(b":"), body.count(b"{"), body.count(b"[")
    chars = np.frombuffer(body, dtype=np.uint8)
    return (
        int(np.count_nonzero(chars == _COLON)),
        int(np.count_nonzero(chars == _BRACE)),
        int(np.count_nonzero(chars == _BRACKET)),
    )


def _walk(root: dict[str, Any] | list[Any], braces: int, brackets: int) -> int:
    """Walk the parsed containers level by level; return how many keys their objects hold.

    The walk stops as soon as it has found as many objects and arrays as the body has `{`
    and `[`: then it has found them all, and the levels below hold scalars only. Raises
    `InvalidJson` when the containers nest deeper than `MAX_DEPTH`.
    """
    level: list[Any] = [root]
    objects = arrays = members = depth = 0
    while level:
        depth += 1
        if depth > MAX_DEPTH:
            raise InvalidJson(f"JSON nested more than {MAX_DEPTH} levels deep")
        for node in level:
            if type(node) is dict:
                objects += 1
                members += len(node)
            else:
                arrays += 1
        if objects == braces and arrays == brackets:
            break
        level = [
            child
            for node in level
            for child in (node.values() if type(node) is dict else node)
            if type(child) in _CONTAINERS
        ]
    return members


def _same_colons_reserialized(body: bytes, value: Any, colons: int) -> bool:
    """True when the body has no escape sequence and as many colons as orjson's rewrite.

    Without escapes, strings hold the same colons in the body as in the rewrite, so the
    difference is the members orjson dropped: keys that repeated.
    """
    return body.find(b"\\") < 0 and orjson.dumps(value).count(b":") == colons


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`object_pairs_hook` that refuses an object naming one key twice."""
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise InvalidJson(f"duplicate key {key!r} in a JSON object")
        seen.add(key)
    return dict(pairs)
