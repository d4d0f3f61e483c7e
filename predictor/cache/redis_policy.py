"""Whether the shared Redis tier is worth consulting for this model: timed at start-up.

A Redis lookup costs a round trip on every row the in-process tier lacks; a Redis hit
saves one model run. Whatever the hit rate, a lookup can only pay when the model costs
more per row than the round trip: a compiled gradient-boosting model answers a row in
about 10 µs, below any network round trip, so Redis only adds latency and CPU; an SVR
costs milliseconds per row and Redis clearly pays. At start-up the server times both, logs
the judgement and exports it (`housing_redis_pays`); `--redis_policy` decides what to do
with it: `always` (the default) consults Redis whenever a URL is given, `never` never,
`auto` only when it pays.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from typing import Any, Final

import numpy as np

from predictor.metrics import MODEL_ROW_SECONDS, REDIS_PAYS, REDIS_ROUND_TRIP_SECONDS

logger: Final = logging.getLogger(f"kserve.{__name__}")

ALWAYS: Final = "always"
NEVER: Final = "never"
AUTO: Final = "auto"

# The first row of the California housing data: a typical row, in schema order.
TYPICAL_ROW: Final = (8.3252, 41.0, 6.984127, 1.02381, 322.0, 2.555556, 37.88, -122.23)
TIMED_CALLS: Final = 21
WARM_UP_CALLS: Final = 3


def model_seconds_per_row(predict: Callable[[np.ndarray], Any]) -> float:
    """The median time of a one-row prediction (the common request), after a warm-up."""
    row = np.array([TYPICAL_ROW], dtype=np.float64)
    for _ in range(WARM_UP_CALLS):
        predict(row)
    times = []
    for _ in range(TIMED_CALLS):
        started = time.perf_counter()
        predict(row)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def consult_redis(policy: str, row_seconds: float, round_trip_seconds: float | None) -> bool:
    """Log and export whether Redis pays for this model; return whether to consult it."""
    MODEL_ROW_SECONDS.set(row_seconds)
    if round_trip_seconds is None:
        logger.info(
            "Model costs %.1f µs per row; Redis did not answer at start-up, so whether it "
            "pays is unknown (policy %s: consulting it once it answers)",
            row_seconds * 1e6,
            policy,
        )
        return True
    REDIS_ROUND_TRIP_SECONDS.set(round_trip_seconds)
    pays = row_seconds > round_trip_seconds
    REDIS_PAYS.set(pays)
    consult = policy == ALWAYS or (policy == AUTO and pays)
    logger.info(
        "Model costs %.1f µs per row, a Redis round trip %.1f µs: the shared tier %s "
        "(policy %s: %s)",
        row_seconds * 1e6,
        round_trip_seconds * 1e6,
        "pays" if pays else "does not pay (a hit saves less than a lookup costs)",
        policy,
        "consulting Redis" if consult else "in-process cache only",
    )
    return consult
