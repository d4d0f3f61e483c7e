"""Canonical form of validated rows and the md5 keys derived from it.

The canonical form of one row is the compact JSON object of its 8 features in schema
order, each written as the shortest decimal that round-trips the float64 value (Python's
`repr(float)`, which is also what `json.dumps` writes), with no whitespace:

    {"MedInc":8.3252,"HouseAge":42.0,"AveRooms":6.98,...,"Longitude":-122.23}

The canonical form of a request is the JSON array of its canonical rows,
`[row0,row1,...]`, so in Python a client computes the same `query_key` with

    hashlib.md5(json.dumps([{f: float(item[f]) + 0.0 for f in FEATURES} for item in items],
                           separators=(",", ":")).encode()).hexdigest()

(`+ 0.0` turns -0.0 into 0.0, as validation does.) Field order, extra keys, `42` versus
`42.0` and `-0.0` versus `0.0` do not change the canonical form.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

import numpy as np

from predictor.protocol.schema import FEATURES

_ROW_TEMPLATE: Final = "{" + ",".join(f'"{name}":%r' for name in FEATURES) + "}"


def canonical_rows(rows: np.ndarray) -> list[str]:
    """Canonical JSON text of each row of a validated float64 matrix."""
    return [_ROW_TEMPLATE % tuple(row) for row in rows.tolist()]


def row_digests(canonical: Sequence[str]) -> list[str]:
    """md5 hex digest of each canonical row: the per-row part of a cache key."""
    return [hashlib.md5(text.encode(), usedforsecurity=False).hexdigest() for text in canonical]


def query_key(canonical: Sequence[str]) -> str:
    """md5 hex digest of the whole request's canonical form (the legacy `query_key`)."""
    text = "[" + ",".join(canonical) + "]"
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def cache_key(prefix: str, model_version: str, row_digest: str) -> str:
    """One entry per row and model version, so a new model never reads an old one's answers."""
    return f"{prefix}:{model_version}:{row_digest}"
