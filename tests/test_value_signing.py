"""How predictions are written to Redis and read back: exact floats, and MACs when signed."""

from __future__ import annotations

import pytest

from predictor.cache.signing import ValueCodec

KEY = b"0123456789abcdef0123456789abcdef"
ROW_KEY = "housing:1f486214b83803a6:108adb2ee6969b30d33760c5452348a9"
OTHER_ROW = "housing:1f486214b83803a6:208adb2ee6969b30d33760c5452348a9"
OTHER_VERSION = "housing:2f486214b83803a6:108adb2ee6969b30d33760c5452348a9"


@pytest.mark.parametrize("value", [4.526, 1e16, 5e-324, -2.2250738585072014e-308, 0.0])
def test_values_read_back_exactly(value: float) -> None:
    for codec in (ValueCodec(), ValueCodec(KEY)):
        stored = codec.encode(ROW_KEY, value)
        assert len(stored) <= codec.max_bytes
        assert codec.decode(ROW_KEY, stored) == value


def test_unsigned_values_are_only_the_exact_repr() -> None:
    codec = ValueCodec()
    assert codec.encode(ROW_KEY, 0.5) == b"0.5"
    for foreign in (b"0.50", b" 0.5", b"nan", b"4_2", b"42", b"", b"1" * 30):
        assert codec.decode(ROW_KEY, foreign) is None


def test_a_signed_value_is_bound_to_its_key_and_its_signing_key() -> None:
    codec = ValueCodec(KEY)
    stored = codec.encode(ROW_KEY, 2.5)
    assert stored.startswith(b"2.5|")
    assert codec.decode(ROW_KEY, b"2.5") is None  # unsigned, as anyone could write it
    assert codec.decode(OTHER_ROW, stored) is None  # moved to another row
    assert codec.decode(OTHER_VERSION, stored) is None  # or to another model version
    assert codec.decode(ROW_KEY, b"3.5" + stored[3:]) is None  # prediction changed
    changed = b"B" if stored[-1:] == b"A" else b"A"
    assert codec.decode(ROW_KEY, stored[:-1] + changed) is None  # tag changed
    assert ValueCodec(b"another key, 16+ bytes").decode(ROW_KEY, stored) is None
    assert ValueCodec().decode(ROW_KEY, stored) is None  # a signed value is not a float


def test_an_empty_signing_key_is_refused() -> None:
    with pytest.raises(ValueError):
        ValueCodec(b"")
