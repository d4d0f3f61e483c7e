"""Unit tests of the input schema: one set of rules for objects, arrays and tensors."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.payloads import load_json
from predictor.protocol.schema import (
    FEATURES,
    PYTHON_CHECK_MAX_ROWS,
    InvalidRows,
    validate_arrays,
    validate_instances,
    validate_matrix,
    validate_objects,
)

GOOD: dict[str, Any] = load_json("sample.json")[0]

# (feature, a value just inside the bound, a value just outside it)
BOUNDS = [
    ("MedInc", 1e-9, 0),
    ("HouseAge", 0, -1e-9),
    ("AveRooms", 1e-9, 0),
    ("AveBedrms", 1e-9, 0),
    ("Population", 1e-9, 0),
    ("AveOccup", 1e-9, 0),
    ("Latitude", -90, -90.000001),
    ("Latitude", 90, 90.000001),
    ("Longitude", -180, -180.000001),
    ("Longitude", 180, 180.000001),
]
NOT_NUMBERS: list[Any] = [None, True, False, "1.0", "abc", [1.0], {"v": 1}]
NOT_FINITE = [math.nan, math.inf, -math.inf]


def with_value(field: str, value: Any) -> dict[str, Any]:
    return {**GOOD, field: value}


def rejected_fields(call: Any, *args: Any) -> list[tuple[int | None, str | None]]:
    with pytest.raises(InvalidRows) as e:
        call(*args)
    return [(err.index, err.field) for err in e.value.errors]


def test_objects_give_a_float_matrix_in_schema_order() -> None:
    rows = validate_objects([GOOD, {**GOOD, "extra": "ignored"}])
    assert rows.dtype == np.float64
    assert rows.tolist() == [[float(GOOD[f]) for f in FEATURES]] * 2


@pytest.mark.parametrize(("field", "inside", "outside"), BOUNDS)
def test_every_bound_on_every_path(field: str, inside: float, outside: float) -> None:
    column = FEATURES.index(field)
    validate_objects([with_value(field, inside)])
    assert rejected_fields(validate_objects, [GOOD, with_value(field, outside)]) == [(1, field)]
    matrix = np.array([[float(GOOD[f]) for f in FEATURES]] * 2)
    matrix[1, column] = outside
    assert rejected_fields(validate_matrix, matrix) == [(1, field)]
    matrix[1, column] = inside
    validate_matrix(matrix)


@pytest.mark.parametrize("value", NOT_NUMBERS)
def test_non_numbers_are_rejected(value: Any) -> None:
    assert rejected_fields(validate_objects, [with_value("AveRooms", value)]) == [(0, "AveRooms")]
    array = [float(GOOD[f]) for f in FEATURES]
    array[2] = value
    assert rejected_fields(validate_arrays, [array]) == [(0, "AveRooms")]


@pytest.mark.parametrize("value", NOT_FINITE)
def test_non_finite_values_are_rejected(value: float) -> None:
    assert rejected_fields(validate_objects, [with_value("Latitude", value)]) == [(0, "Latitude")]
    matrix = np.array([[float(GOOD[f]) for f in FEATURES]])
    matrix[0, 6] = value
    assert rejected_fields(validate_matrix, matrix) == [(0, "Latitude")]


def test_huge_integers_are_rejected_not_overflowed() -> None:
    assert rejected_fields(validate_objects, [with_value("Population", 10**400)]) == [
        (0, "Population")
    ]
    array = [float(GOOD[f]) for f in FEATURES]
    array[4] = 10**400
    with pytest.raises(InvalidRows):
        validate_arrays([array])


def test_missing_fields_are_each_named() -> None:
    item = {k: v for k, v in GOOD.items() if k not in ("HouseAge", "Longitude")}
    assert rejected_fields(validate_objects, [item]) == [(0, "HouseAge"), (0, "Longitude")]


@pytest.mark.parametrize("body", [{}, "text", 3, None, []])
def test_request_level_errors_name_no_row(body: Any) -> None:
    assert rejected_fields(validate_objects, body) == [(None, None)]


def test_non_object_items_are_named_by_index() -> None:
    assert rejected_fields(validate_objects, [GOOD, 3, "x"]) == [(1, None), (2, None)]


def test_v1_instances_mix_objects_and_arrays() -> None:
    array = [float(GOOD[f]) for f in FEATURES]
    rows = validate_instances([GOOD, array])
    assert rows[0].tolist() == rows[1].tolist() == array
    assert rejected_fields(validate_instances, [GOOD, array[:7]]) == [(1, None)]


def test_negative_zero_is_canonicalised() -> None:
    rows = validate_objects([with_value("HouseAge", -0.0)])
    assert math.copysign(1.0, rows[0, 1]) == 1.0


def test_matrix_shape_is_checked() -> None:
    for shape in [(0, 8), (2, 7), (8,)]:
        with pytest.raises(InvalidRows):
            validate_matrix(np.ones(shape))


row_values = st.fixed_dictionaries(
    {
        f: st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(10**6), 10**6)
        for f in FEATURES
    }
)


@given(st.lists(row_values, min_size=1, max_size=5))
def test_object_and_matrix_paths_agree(items: list[dict[str, float]]) -> None:
    """Whatever the values, both validators accept the same rows and give the same matrix."""
    try:
        from_objects: np.ndarray | None = validate_objects(items)
    except InvalidRows:
        from_objects = None
    try:
        from_matrix: np.ndarray | None = validate_matrix(
            np.array([[float(i[f]) for f in FEATURES] for i in items])
        )
    except InvalidRows:
        from_matrix = None
    if from_objects is None or from_matrix is None:
        assert from_objects is None and from_matrix is None
    else:
        assert from_objects.tobytes() == from_matrix.tobytes()


edge_values = st.sampled_from(
    [0.0, -0.0, 1e-300, -1e-300, 90.0, -90.0, 90.0000001, 180.0, -180.0, -180.0000001]
)
cell = edge_values | st.floats(allow_nan=True, allow_infinity=True)


@given(st.lists(st.lists(cell, min_size=8, max_size=8), min_size=1, max_size=3))
def test_few_rows_and_many_rows_apply_the_same_bounds(rows: list[list[float]]) -> None:
    """Few rows are checked value by value, many with NumPy: same cells, same messages."""

    def errors(matrix: np.ndarray) -> list[tuple[int | None, str | None, str]]:
        try:
            validate_matrix(matrix)
        except InvalidRows as e:
            return [(err.index, err.field, err.message) for err in e.errors]
        return []

    few = np.array(rows, dtype=np.float64)
    many = np.tile(few, (PYTHON_CHECK_MAX_ROWS + 1, 1))
    found_few, found_many = errors(few), errors(many)
    # Both list bad cells in row order, at most 5; the tiled matrix repeats the rows after.
    assert found_many[: len(found_few)] == found_few
    assert bool(found_many) == bool(found_few)


def test_valid_objects_read_without_pydantic_match_the_schema() -> None:
    """The fast path of `validate_objects` gives what `HousingFeatures` gives, -0.0 as 0.0."""
    from predictor.protocol.schema import HousingFeatures

    items = [
        {"MedInc": 8.3252, "HouseAge": 42, "AveRooms": 6.98, "AveBedrms": 1.02,
         "Population": 322, "AveOccup": 2.55, "Latitude": -0.0, "Longitude": -122.23, "x": 1},
        {"MedInc": 1e-9, "HouseAge": 0, "AveRooms": 1, "AveBedrms": 1, "Population": 10**20,
         "AveOccup": 1, "Latitude": 90, "Longitude": -180},
    ]  # fmt: skip
    expected = [
        [float(getattr(HousingFeatures.model_validate(i), f)) for f in FEATURES] for i in items
    ]
    rows = validate_objects(items)
    assert rows.tolist() == expected
    assert str(rows[0, 6]) == "0.0"
    arrays = validate_objects([list(r) for r in expected], allow_arrays=True)
    assert arrays.tolist() == expected
