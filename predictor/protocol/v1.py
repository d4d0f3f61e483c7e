"""V1 (KServe's V1 protocol): `{"instances": [...]}` or `{"inputs": [...]}` → rows.

Each instance is one of
- an object with the 8 features (extra keys ignored) or an array of them in schema order;
- what KServe's sklearnserver reads as a pandas DataFrame: a list of such objects (records,
  one row each), or an object whose features are lists of one length (columns, one row
  per position).
The answer is `{"predictions": [...]}`, one number per row, in order; `:explain` answers
`{"explanations": [{"prediction", "base_value", "contributions": {feature: value}}, ...]}`.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np

from predictor.protocol.schema import FEATURES, request_error, validate_arrays, validate_instances

OUTLINE: Final = 'expected a JSON object {"instances": [...]} or {"inputs": [...]}'


def instances(body: Any) -> list[Any] | None:
    """The instances of a V1 request: its `instances` or its `inputs` (KServe's V1
    protocol takes either), or None when the body is not one of those two outlines."""
    if not isinstance(body, dict) or ("instances" in body) == ("inputs" in body):
        return None
    found = body["instances"] if "instances" in body else body["inputs"]
    return found if isinstance(found, list) else None


def rows(body: Any, max_rows: int) -> np.ndarray:
    """The validated float64 rows of a V1 request body; `InvalidRows` saying what is wrong."""
    items = instances(body)
    if items is None:
        raise request_error(OUTLINE)
    if any(_is_frame(item) for item in items):
        items = [row for item in items for row in _frame_rows(item)]
    if len(items) > max_rows:
        raise request_error(f"{len(items)} rows exceed max_batch_size {max_rows}")
    if items and all(type(item) is list for item in items):
        return validate_arrays(items)
    return validate_instances(items)


def explanations(
    predictions: np.ndarray, base_value: float, contributions: list[dict[str, float]]
) -> dict[str, Any]:
    """The `:explain` answer: each row's prediction, the base value and its contributions."""
    return {
        "explanations": [
            {"prediction": p, "base_value": base_value, "contributions": c}
            for p, c in zip(predictions.tolist(), contributions, strict=True)
        ]
    }


def _is_frame(item: Any) -> bool:
    """Whether an instance is sklearnserver's DataFrame form: records or columns."""
    if type(item) is list:
        return bool(item) and type(item[0]) is dict
    return type(item) is dict and any(type(item.get(name)) is list for name in FEATURES)


def _frame_rows(item: Any) -> list[Any]:
    """The rows of one instance: itself, or those of its records or columns."""
    if type(item) is list:
        return item if item and type(item[0]) is dict else [item]
    if type(item) is not dict or not any(type(item.get(name)) is list for name in FEATURES):
        return [item]
    columns = [item.get(name) for name in FEATURES]
    lengths = {len(c) for c in columns if type(c) is list}
    if len(lengths) != 1 or not all(type(c) is list for c in columns):
        raise request_error(
            "an instance of feature columns needs each of the 8 features as a list, "
            "all of one length"
        )
    return [dict(zip(FEATURES, values, strict=True)) for values in zip(*columns, strict=True)]
