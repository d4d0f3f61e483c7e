"""The input schema: the 8 California-housing features, their order and their bounds.

`HousingFeatures` is the single source of truth. Object inputs (legacy `/predict`, V1
instances given as objects) are validated by it directly; matrix inputs (V1 instances
given as arrays, V2 tensors) are checked by `validate_matrix`, whose bounds are read off
the same model, so the two paths cannot disagree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import annotated_types
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

FEATURES: Final = (
    "MedInc",
    "HouseAge",
    "AveRooms",
    "AveBedrms",
    "Population",
    "AveOccup",
    "Latitude",
    "Longitude",
)
N_FEATURES: Final = len(FEATURES)


class HousingFeatures(BaseModel):
    """One block group. Numbers only (no strings, booleans or null), finite, within bounds."""

    model_config = ConfigDict(extra="ignore", strict=True, allow_inf_nan=False, frozen=True)

    MedInc: float = Field(gt=0, description="Median income in the block group (10k USD).")
    HouseAge: float = Field(ge=0, description="Median house age in the block group (years).")
    AveRooms: float = Field(gt=0, description="Average number of rooms per household.")
    AveBedrms: float = Field(gt=0, description="Average number of bedrooms per household.")
    Population: float = Field(gt=0, description="Block group population.")
    AveOccup: float = Field(gt=0, description="Average number of household members.")
    Latitude: float = Field(ge=-90, le=90, description="Block group latitude (degrees).")
    Longitude: float = Field(ge=-180, le=180, description="Block group longitude (degrees).")


@dataclass(frozen=True)
class FieldError:
    """Why one field of one row was rejected."""

    index: int | None
    """Row index; None when the request as a whole is wrong."""
    field: str | None
    message: str

    def __str__(self) -> str:
        if self.index is None:
            return self.message
        where = f"item {self.index}" + (f", field {self.field!r}" if self.field else "")
        return f"{where}: {self.message}"


def request_error(message: str) -> InvalidRows:
    """An error about the whole request rather than one row."""
    return InvalidRows([FieldError(None, None, message)])


class InvalidRows(ValueError):
    """The request holds at least one invalid row; nothing of it is predicted."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(str(e) for e in self.errors[:5]))


@dataclass(frozen=True)
class _Bound:
    lower: float
    lower_inclusive: bool
    upper: float

    def admits(self, value: float) -> bool:
        """The rule for one value (the vectorised check in `validate_matrix` is its twin)."""
        above = value >= self.lower if self.lower_inclusive else value > self.lower
        return math.isfinite(value) and above and value <= self.upper

    def describe(self) -> str:
        low = f"{'>=' if self.lower_inclusive else '>'} {self.lower:g}"
        return low if math.isinf(self.upper) else f"{low} and <= {self.upper:g}"


def _bounds_from_schema() -> tuple[_Bound, ...]:
    bounds = []
    for name in FEATURES:
        lower, inclusive, upper = -math.inf, True, math.inf
        for rule in HousingFeatures.model_fields[name].metadata:
            if isinstance(rule, annotated_types.Gt):
                lower, inclusive = float(rule.gt), False  # type: ignore[arg-type]
            elif isinstance(rule, annotated_types.Ge):
                lower, inclusive = float(rule.ge), True  # type: ignore[arg-type]
            elif isinstance(rule, annotated_types.Le):
                upper = float(rule.le)  # type: ignore[arg-type]
        bounds.append(_Bound(lower, inclusive, upper))
    return tuple(bounds)


_BOUNDS: Final = _bounds_from_schema()
_LOWER: Final = np.array([b.lower for b in _BOUNDS])
_LOWER_INCLUSIVE: Final = np.array([b.lower_inclusive for b in _BOUNDS])
_UPPER: Final = np.array([b.upper for b in _BOUNDS])

# Up to this many rows, bounds are checked value by value rather than with NumPy.
PYTHON_CHECK_MAX_ROWS: Final = 16
# Adding 0.0 turns -0.0 into 0.0, so both spellings give one canonical value and key.
_POSITIVE_ZERO: Final = 0.0


def validate_objects(items: Any, allow_arrays: bool = False) -> np.ndarray:
    """Validate a list of feature objects into a float64 matrix of shape (n, 8).

    With `allow_arrays` (V1 instances), an item may also be an array of the 8 numbers in
    schema order. Raises `InvalidRows` naming every bad item and field: the whole request
    fails.
    """
    if not isinstance(items, list):
        raise request_error("expected a JSON list of feature objects")
    if not items:
        raise request_error("expected at least one item")
    plain = _plain_rows(items, allow_arrays)
    if plain is not None:
        return plain
    rows = np.empty((len(items), N_FEATURES), dtype=np.float64)
    errors: list[FieldError] = []
    for index, item in enumerate(items):
        if allow_arrays and isinstance(item, list):
            if len(item) != N_FEATURES:
                errors.append(FieldError(index, None, f"expected an array of {N_FEATURES} numbers"))
                continue
            item = dict(zip(FEATURES, item, strict=True))
        if not isinstance(item, dict):
            errors.append(FieldError(index, None, "expected an object with the 8 features"))
            continue
        try:
            parsed = HousingFeatures.model_validate(item)
        except ValidationError as e:
            errors.extend(
                FieldError(index, str(err["loc"][0]) if err["loc"] else None, err["msg"])
                for err in e.errors(include_url=False)
            )
            continue
        rows[index] = [getattr(parsed, name) for name in FEATURES]
    if errors:
        raise InvalidRows(errors)
    rows += _POSITIVE_ZERO
    return rows


def _plain_rows(items: list[Any], allow_arrays: bool) -> np.ndarray | None:
    """The rows of items that are all valid, read without pydantic (the common case, at a
    fraction of the cost); None as soon as any item may not be, and then the full check
    says why. Valid means what `HousingFeatures` says: every feature a JSON number (not a
    boolean), finite, within bounds (checked by `_bad_cells`, the same rules)."""
    values = []
    for item in items:
        if type(item) is dict:
            try:
                row = [item[name] for name in FEATURES]
            except KeyError:
                return None
        elif allow_arrays and type(item) is list and len(item) == N_FEATURES:
            row = item
        else:
            return None
        for value in row:
            if type(value) is not float and type(value) is not int:
                return None
        values.append(row)
    try:
        rows = np.array(values, dtype=np.float64)
    except OverflowError:  # an integer too large for a double
        return None
    rows += _POSITIVE_ZERO
    return None if _bad_cells(rows) else rows


def validate_matrix(matrix: np.ndarray) -> np.ndarray:
    """Check an (n, 8) numeric matrix against the schema's bounds; return it as float64.

    Same rules as `HousingFeatures`: finite, within bounds. Raises `InvalidRows` naming the
    first bad cells (row index and feature).
    """
    if matrix.ndim != 2 or matrix.shape[1] != N_FEATURES or matrix.shape[0] == 0:
        raise request_error(
            f"expected shape [N, {N_FEATURES}] with N >= 1, got {list(matrix.shape)}"
        )
    rows = np.ascontiguousarray(matrix, dtype=np.float64) + _POSITIVE_ZERO
    bad = _bad_cells(rows)
    if not bad:
        return rows
    errors = []
    for index, column in bad[:5]:
        value = float(rows[index, column])
        bound = _BOUNDS[column]
        message = (
            "Input should be a finite number"
            if not math.isfinite(value)
            else f"Input should be {bound.describe()}, got {value!r}"
        )
        errors.append(FieldError(index, FEATURES[column], message))
    raise InvalidRows(errors)


def _bad_cells(rows: np.ndarray) -> list[tuple[int, int]]:
    """(row, column) of every value out of bounds, in row order.

    A few rows are checked value by value: cheaper than the ~8 NumPy calls of the
    vectorised check, whose per-call overhead dominates on one row.
    """
    if len(rows) <= PYTHON_CHECK_MAX_ROWS:
        return [
            (index, column)
            for index, row in enumerate(rows.tolist())
            for column, value in enumerate(row)
            if not _BOUNDS[column].admits(value)
        ]
    with np.errstate(invalid="ignore"):
        above_lower = np.where(_LOWER_INCLUSIVE, rows >= _LOWER, rows > _LOWER)
        ok = np.isfinite(rows) & above_lower & (rows <= _UPPER)
    if ok.all():
        return []
    return [(int(i), int(c)) for i, c in zip(*np.nonzero(~ok), strict=True)]


def validate_arrays(items: list[Any]) -> np.ndarray:
    """Validate a list of 8-number arrays (V1 instances in feature order)."""
    errors: list[FieldError] = []
    for index, item in enumerate(items):
        if not isinstance(item, list) or len(item) != N_FEATURES:
            errors.append(FieldError(index, None, f"expected an array of {N_FEATURES} numbers"))
            continue
        for column, value in enumerate(item):
            if isinstance(value, bool) or not isinstance(value, int | float):
                errors.append(FieldError(index, FEATURES[column], "Input should be a valid number"))
    if errors:
        raise InvalidRows(errors)
    try:
        matrix = np.array(items, dtype=np.float64)
    except OverflowError as e:  # an integer too large for a double
        raise request_error("a number is out of range for a double") from e
    return validate_matrix(matrix)


def validate_instances(items: list[Any]) -> np.ndarray:
    """V1 instances: each an object with the 8 features or an array of them in order."""
    return validate_objects(items, allow_arrays=True)
