"""harness.durations reads Go durations exactly as Go's time.ParseDuration does.

The expected values are Go's (time.ParseDuration, Go 1.22): the planner and the manifest
checks must agree with Knative, which parses its settings with it.
"""

from __future__ import annotations

import pytest

from harness.durations import parse_go_duration


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("0", 0.0),
        ("-0", 0.0),
        ("+0", 0.0),
        ("0s", 0.0),
        ("60s", 60.0),
        ("5m", 300.0),
        ("1m30s", 90.0),
        ("1.5h", 5400.0),
        ("250ms", 0.25),
        (".5s", 0.5),
        ("5.s", 5.0),
        ("-1s", -1.0),
        ("+2m", 120.0),
        ("1h1m1s", 3661.0),
        ("2s2s", 4.0),
        ("100us", 1e-4),
        ("100µs", 1e-4),
        ("100μs", 1e-4),
        ("7ns", 7e-9),
    ],
)
def test_go_accepts(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize(
    "text", ["", "+", "-", "60", "s", ".s", "1.5", "1 s", " 1s", "1s ", "1d", "1sm", "1S", "--1s"]
)
def test_go_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="not a Go duration"):
        parse_go_duration(text)
