"""Prometheus metrics of the cache tiers and the model, served by kserve at `/metrics`.

kserve exposes prometheus_client's default registry, so metrics created here (once, at
import, as kserve creates its own request histograms) appear next to kserve's.
"""

from __future__ import annotations

from typing import Any, Final

from prometheus_client import Counter, Gauge, Histogram

# Round trips to a local or same-zone Redis take tens to hundreds of microseconds; the
# request-path timeout is a few tens of milliseconds.
_REDIS_BUCKETS: Final = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
)  # fmt: skip
# One row through the compiled model takes microseconds; a 1000-row batch, milliseconds.
_MODEL_BUCKETS: Final = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 1.0,
)  # fmt: skip

CACHE_HITS: Final = Counter("housing_cache_hits", "Rows answered from a cache tier.", ["tier"])
CACHE_MISSES: Final = Counter("housing_cache_misses", "Rows found in no cache tier.")
ROWS_COALESCED: Final = Counter(
    "housing_rows_coalesced",
    "Rows answered by a lookup and model run already in flight for an identical row.",
)
REDIS_ERRORS: Final = Counter(
    "housing_redis_errors",
    "Failed Redis operations, by operation and kind (timeout, connection, error, "
    "bad_value); each one was answered as a miss or dropped.",
    ["operation", "kind"],
)
REDIS_SKIPPED: Final = Counter(
    "housing_redis_skipped",
    "Redis operations skipped because the circuit breaker was open.",
    ["operation"],
)
REDIS_BREAKER_STATE: Final = Gauge(
    "housing_redis_breaker_state", "Redis circuit breaker: 0 closed, 1 half-open, 2 open."
)
REDIS_BREAKER_CHANGES: Final = Counter(
    "housing_redis_breaker_changes",
    "Redis circuit breaker state changes, by the state entered (open, half_open, closed).",
    ["state"],
)
REDIS_SECONDS: Final = Histogram(
    "housing_redis_seconds",
    "Redis round-trip time, failures included, by operation (mget, set).",
    ["operation"],
    buckets=_REDIS_BUCKETS,
)
MODEL_ROW_SECONDS: Final = Gauge(
    "housing_model_row_seconds", "A one-row prediction's time, measured at start-up."
)
REDIS_ROUND_TRIP_SECONDS: Final = Gauge(
    "housing_redis_round_trip_seconds", "A Redis round trip's time, measured at start-up."
)
REDIS_PAYS: Final = Gauge(
    "housing_redis_pays",
    "1 when the model costs more per row than a Redis round trip (a Redis hit saves more "
    "than a lookup costs), else 0; judged at start-up.",
)
MODEL_SECONDS: Final = Histogram(
    "housing_model_seconds",
    "Time the model takes to predict a batch of uncached rows.",
    buckets=_MODEL_BUCKETS,
)
ROWS_PREDICTED: Final = Counter("housing_rows_predicted", "Rows run through the model.")

# Whole inference requests as the server sees them, from the first byte read to the answer.
# Dense between 1 and 10 ms, where P95 and P99 of a busy server fall.
_REQUEST_BUCKETS: Final = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0015, 0.002, 0.0025, 0.003, 0.004, 0.005, 0.0075,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
REQUEST_SECONDS: Final = Histogram(
    "housing_request_seconds",
    "Inference request latency in the server, by route (legacy, v1, v2, grpc) and status "
    "(HTTP status code, or gRPC status name).",
    ["route", "status"],
    buckets=_REQUEST_BUCKETS,
)
INFLIGHT: Final = Gauge(
    "housing_inflight_requests", "Inference requests in flight (REST; shed beyond --max_inflight)."
)
HTTP_REFUSED: Final = Counter(
    "housing_http_refused",
    "Connections answered and closed by the HTTP layer before their request reached the app, "
    "by reason (header_timeout, body_timeout, header_too_large, too_many_headers, "
    "bad_request, host, http_version, unsupported_upgrade, idle).",
    ["reason"],
)
HTTP_DROPPED: Final = Counter(
    "housing_http_dropped",
    "Connections aborted because their client did not take its answers, by reason "
    "(write_timeout, unsent_bytes, unsent_total); a request waiting to write was freed at once.",
    ["reason"],
)
SERVER_RESTARTS: Final = Counter(
    "housing_server_restarts",
    "Servers built again after ending by themselves (predictor.server), by server.",
    ["server"],
)


def count(counter: Any, n: int) -> None:
    """Add `n` to a Prometheus counter; skipped for 0 (the hot path counts often)."""
    if n:
        counter.inc(n)
