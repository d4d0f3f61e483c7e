"""Go durations (`time.ParseDuration`), the format of Knative's settings: "90s", "1m30s".

One parser for the manifests' tests and the autoscaling planner, with Go's semantics: an
optional sign, then one or more decimal numbers each with a unit (ns, us, µs, μs, ms, s, m,
h); "0" alone needs no unit; "", "+", ".s" and a number without a unit are errors; ".5s" and
"5.s" are valid; "-1s" is minus one second (ranges are the caller's business).
"""

from __future__ import annotations

import re
from typing import Final

_UNIT_SECONDS: Final = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0,
}  # fmt: skip
_TERM: Final = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration(text: str) -> float:
    """Seconds in `text`, as Go's time.ParseDuration reads it; ValueError if Go would refuse."""
    body, sign = text, 1.0
    if body.startswith(("+", "-")):
        body, sign = body[1:], (-1.0 if body[0] == "-" else 1.0)
    if body == "0":
        return 0.0
    seconds, position = 0.0, 0
    for match in _TERM.finditer(body):
        if match.start() != position:
            break
        seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if not body or position != len(body):
        raise ValueError(f"not a Go duration: {text!r}")
    return sign * seconds
