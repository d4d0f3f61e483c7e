"""Command-line flags → one typed settings object, parsed once in `main()`.

The parser extends kserve's own (`parents=[kserve.model_server.parser]`), so every standard
ModelServer flag (`--http_port`, `--grpc_port`, `--workers`, `--enable_grpc`, ...) works.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from predictor.model_wait import ASYNC_MODE
from predictor.sentinel_url import SENTINEL_SCHEME, parse_sentinel_url

REDIS_URL_SCHEMES: Final = ("redis", "rediss")
REDIS_POLICIES: Final = ("always", "never", "auto")
_MASK: Final = "***"


@dataclass(frozen=True)
class CacheSettings:
    local_max_entries: int = 100_000
    """Bound of the in-process LRU (entries; one per row and model version)."""
    local_ttl_seconds: float = 3600.0
    """How long the in-process LRU keeps a prediction."""
    key_prefix: str = "housing"
    """First part of every cache key: `<prefix>:<model version>:<row md5>`."""
    redis_url: str | None = field(default=None, repr=False)
    """`redis://` or `rediss://` URL of the shared tier; None for the in-process cache only.
    Kept out of the repr: it may carry a password."""
    redis_password: str | None = field(default=None, repr=False)
    """Password for Redis when the URL has none (from REDIS_PASSWORD)."""
    redis_timeout_seconds: float = 0.05
    """Bound on one Redis operation on the request path (pool wait, connect, round trip)."""
    redis_ttl_seconds: float = 86400.0
    """How long Redis keeps a prediction, before jitter."""
    redis_ttl_jitter: float = 0.1
    """Relative spread of Redis TTLs (0.1: ±10%), so a burst of writes does not expire at once."""
    redis_max_connections: int = 32
    """Bound of the Redis connection pool of one server process."""
    redis_breaker_failures: int = 3
    """Consecutive Redis failures after which Redis is skipped for a cool-down."""
    redis_breaker_cooldown_seconds: float = 5.0
    """How long Redis is skipped before one request probes it again."""
    redis_cluster: bool = False
    """Treat the URL as any node of a Redis Cluster (slots, MOVED/ASK, failover)."""
    redis_policy: str = "always"
    """`always` consult Redis when a URL is given, `never`, or `auto`: only when the model's
    cost per row, timed at start-up, exceeds a Redis round trip."""
    signing_key: bytes | None = field(default=None, repr=False)
    """Key of the MAC that Redis values carry (CACHE_SIGNING_KEY); None: unsigned values."""


@dataclass(frozen=True)
class ConnectionLimits:
    """Bounds on what one HTTP connection may cost (predictor.upstream.uvicorn_protocol)."""

    header_timeout_seconds: float = 5.0
    """Time to receive a request's line and headers, from the connection opening or from the
    first byte of a later request on it (408 and close)."""
    body_timeout_seconds: float = 10.0
    """Time to receive a request's body once its headers are in (408 and close)."""
    max_header_bytes: int = 64 * 1024
    """Bytes of request line and headers (431 and close)."""
    max_headers: int = 128
    """Header fields per request (431 and close): above Envoy's default 100, so that what
    Envoy lets through, plus the headers the proxies on the way add, is accepted."""
    write_timeout_seconds: float = 5.0
    """Time a client has to take the bytes of its answers once they pile up (above the
    transport's 64 KiB high-water mark); then the connection is dropped."""
    max_unsent_bytes_per_connection: int = 256 * 1024
    """Unsent bytes a connection may hold when another answer is ready to be written: only
    a client pipelining requests without reading their answers comes near it."""
    max_unsent_bytes: int = 64 * 1024 * 1024
    """Unsent bytes of all paused connections together (the longest paused are dropped)."""


@dataclass(frozen=True)
class Settings:
    model_dir: Path
    model_name: str
    max_batch_size: int
    """Rows per request beyond which a request is refused with a 4xx."""
    max_body_bytes: int
    """Request body size beyond which a request is refused with 413."""
    max_inflight: int
    """Inference requests in flight beyond which new ones get 503 at once."""
    response_cache_size: int
    """Whole `/predict` answers remembered by exact request body (0: none)."""
    cache: CacheSettings
    limits: ConnectionLimits
    server: dict[str, Any]
    """kserve ModelServer keyword arguments taken from kserve's own flags."""
    log_format: str = "json"
    """`json` (one object per line) or `text`."""
    log_level: str = "INFO"
    """From KSERVE_LOGLEVEL, as kserve itself reads it."""
    model_wait_seconds: float = 0.0
    """How long to wait for the model directory to appear before loading it: the
    --model_wait_seconds flag when KServe says MODEL_INIT_MODE=async (a modelcar), else 0."""
    enable_model_repository: bool = False
    """Serve the V2 model repository extension (load/unload); off: 403 / PERMISSION_DENIED."""
    unloaded_liveness_seconds: float = 10.0
    """How long liveness stays 200 once the model is gone (readiness fails at once)."""
    client_error_log_lines_per_minute: float = 60.0
    """Client-error log lines (one short WARNING each) beyond which they are dropped."""
    offload_body_bytes: int = 64 * 1024
    """Request bodies above this size are decoded and checked in a worker thread."""
    grpc_reflection: bool = True
    """Serve gRPC server reflection (what `grpcurl` and Postman use to find the service)."""


def build_parser(kserve_parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m predictor",
        description="Serve the California housing model with KServe.",
        parents=[kserve_parser],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model_dir", type=Path, required=True, help="Trained model directory.")
    parser.add_argument("--max_batch_size", type=int, default=1000, help="Rows per request.")
    parser.add_argument(
        "--max_body_bytes", type=int, default=2 * 1024 * 1024, help="Request body cap (bytes)."
    )
    parser.add_argument(
        "--max_inflight",
        type=int,
        default=256,
        help="In-flight inference requests beyond which new ones get 503 (keep it at or "
        "above the InferenceService's containerConcurrency).",
    )
    parser.add_argument(
        "--response_cache_size",
        type=int,
        default=1024,
        help="Whole /predict answers remembered by exact request body (bodies up to 4 KiB; "
        "0 turns the memo off).",
    )
    parser.add_argument(
        "--redis_url",
        default=None,
        help="Redis URL of the shared cache tier (or $REDIS_URL); none: in-process cache only.",
    )
    parser.add_argument("--cache_size", type=int, default=100_000, help="In-process LRU entries.")
    parser.add_argument(
        "--cache_ttl_seconds", type=float, default=3600.0, help="In-process LRU time-to-live."
    )
    parser.add_argument("--cache_key_prefix", default="housing", help="Cache key prefix.")
    parser.add_argument(
        "--log_format", choices=("json", "text"), default="json", help="Log line format."
    )
    parser.add_argument(
        "--redis_timeout_ms", type=float, default=50.0, help="Bound on one Redis operation."
    )
    parser.add_argument(
        "--redis_ttl_seconds", type=float, default=86400.0, help="Redis time-to-live."
    )
    parser.add_argument(
        "--redis_ttl_jitter", type=float, default=0.1, help="Relative spread of Redis TTLs."
    )
    parser.add_argument(
        "--redis_max_connections", type=int, default=32, help="Redis connection pool bound."
    )
    parser.add_argument(
        "--redis_breaker_failures",
        type=int,
        default=3,
        help="Consecutive Redis failures that open the circuit breaker.",
    )
    parser.add_argument(
        "--redis_breaker_cooldown_seconds",
        type=float,
        default=5.0,
        help="How long an open breaker skips Redis before probing it again.",
    )
    parser.add_argument(
        "--redis_cluster",
        type=_strtobool,
        default=False,
        help="Treat --redis_url as any node of a Redis Cluster (or $REDIS_CLUSTER).",
    )
    parser.add_argument(
        "--redis_policy",
        choices=REDIS_POLICIES,
        default="always",
        help="Consult Redis always, never, or auto: only when the model's cost per row "
        "(timed at start-up) exceeds a Redis round trip.",
    )
    parser.add_argument(
        "--cache_signing_key",
        default=None,
        help="Sign Redis values with this key (or $CACHE_SIGNING_KEY); unsigned or "
        "wrongly signed values are misses.",
    )
    parser.add_argument(
        "--model_wait_seconds",
        type=float,
        default=120.0,
        help="With MODEL_INIT_MODE=async (KServe, for a modelcar): how long to wait for the "
        "model directory to appear before giving up.",
    )
    limits = ConnectionLimits()
    parser.add_argument(
        "--header_timeout_seconds",
        type=float,
        default=limits.header_timeout_seconds,
        help="Time to receive a request's headers (then 408 and close).",
    )
    parser.add_argument(
        "--body_timeout_seconds",
        type=float,
        default=limits.body_timeout_seconds,
        help="Time to receive a request's body once its headers are in (then 408 and close).",
    )
    parser.add_argument(
        "--max_header_bytes",
        type=int,
        default=limits.max_header_bytes,
        help="Bytes of request line and headers (then 431 and close).",
    )
    parser.add_argument(
        "--max_headers",
        type=int,
        default=limits.max_headers,
        help="Header fields per request (then 431 and close).",
    )
    parser.add_argument(
        "--write_timeout_seconds",
        type=float,
        default=limits.write_timeout_seconds,
        help="Time a client has to take its answers once 64 KiB of them wait (then the "
        "connection is dropped and its request freed).",
    )
    parser.add_argument(
        "--max_unsent_bytes_per_connection",
        type=int,
        default=limits.max_unsent_bytes_per_connection,
        help="Unsent answer bytes one connection may hold when another answer is ready "
        "(then it is dropped).",
    )
    parser.add_argument(
        "--max_unsent_bytes",
        type=int,
        default=limits.max_unsent_bytes,
        help="Unsent answer bytes of all connections together (beyond it, the longest "
        "stalled are dropped).",
    )
    parser.add_argument(
        "--enable_model_repository",
        type=_strtobool,
        default=False,
        help="Serve the V2 model repository API (load/unload); off, it answers 403 "
        "(gRPC: PERMISSION_DENIED).",
    )
    parser.add_argument(
        "--enable_grpc_reflection",
        type=_strtobool,
        default=True,
        help="Serve gRPC server reflection (grpcurl, Postman and the like list and call "
        "the service without its .proto).",
    )
    parser.add_argument(
        "--unloaded_liveness_seconds",
        type=float,
        default=10.0,
        help="How long liveness stays 200 once the model is gone (readiness fails at once).",
    )
    parser.add_argument(
        "--client_error_log_lines_per_minute",
        type=float,
        default=60.0,
        help="Client-error log lines (one short WARNING each) beyond which they are dropped.",
    )
    parser.add_argument(
        "--offload_body_bytes",
        type=int,
        default=64 * 1024,
        help="Request bodies above this size are decoded and checked off the event loop.",
    )
    # Our defaults for kserve flags: the model is "housing", and no per-request log line.
    parser.set_defaults(model_name="housing", enable_latency_logging=False)
    return parser


def _strtobool(value: str) -> bool:
    """`true`/`false` like kserve's boolean flags (`--enable_grpc false`)."""
    lowered = value.lower()
    if lowered in ("1", "true", "t", "yes", "y", "on"):
        return True
    if lowered in ("0", "false", "f", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def _positive(name: str, value: float) -> None:
    if value <= 0:
        raise SystemExit(f"--{name} must be positive, got {value}")


_POSITIVE_REDIS_FLAGS = (
    "redis_timeout_ms",
    "redis_ttl_seconds",
    "redis_max_connections",
    "redis_breaker_failures",
    "redis_breaker_cooldown_seconds",
)


def masked_url(url: str) -> str:
    """The URL with any password (userinfo or `?password=`) replaced by `***`, for logs."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:{_MASK}@{hostport}"
    query = [(k, _MASK if k == "password" else v) for k, v in parse_qsl(parts.query)]
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, safe="*")))


def _check_redis_url(url: str) -> None:
    """Refuse a malformed Redis URL at start-up, naming it without its password."""
    if url.startswith(f"{SENTINEL_SCHEME}://"):
        try:
            parse_sentinel_url(url)
        except ValueError as e:  # its messages never quote the URL
            raise SystemExit(f"--redis_url / REDIS_URL: {e}, got {masked_url(url)}") from None
        return
    try:
        parts = urlsplit(url)
        hostname, _ = parts.hostname, parts.port  # .port raises ValueError when malformed
    except ValueError:
        raise SystemExit("--redis_url / REDIS_URL is not a valid URL") from None
    if parts.scheme not in REDIS_URL_SCHEMES or not hostname:
        raise SystemExit(
            f"--redis_url / REDIS_URL must be redis://HOST[:PORT][/DB], rediss://... or "
            f"redis+sentinel://HOST:PORT[,HOST:PORT]/SERVICE[/DB], got {masked_url(url)}"
        )


def _signing_key(value: str | None) -> bytes | None:
    if not value:
        return None
    if len(value) < MIN_SIGNING_KEY_CHARS:
        raise SystemExit(
            f"--cache_signing_key / CACHE_SIGNING_KEY must be at least "
            f"{MIN_SIGNING_KEY_CHARS} characters (e.g. `openssl rand -hex 32`)"
        )
    return value.encode()


MIN_SIGNING_KEY_CHARS: Final = 16


def parse_settings(
    kserve_parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    environ: Mapping[str, str],
) -> Settings:
    args = build_parser(kserve_parser).parse_args(argv)
    for name in (
        "max_batch_size",
        "max_body_bytes",
        "max_inflight",
        "cache_size",
        "cache_ttl_seconds",
        "header_timeout_seconds",
        "body_timeout_seconds",
        "max_header_bytes",
        "max_headers",
        "write_timeout_seconds",
        "max_unsent_bytes_per_connection",
        "max_unsent_bytes",
        "unloaded_liveness_seconds",
        "client_error_log_lines_per_minute",
        "offload_body_bytes",
    ):
        _positive(name, getattr(args, name))
    if args.model_wait_seconds < 0:
        raise SystemExit(f"--model_wait_seconds must be >= 0, got {args.model_wait_seconds}")
    for name in _POSITIVE_REDIS_FLAGS:
        _positive(name, getattr(args, name))
    if args.response_cache_size < 0:
        raise SystemExit(f"--response_cache_size must be >= 0, got {args.response_cache_size}")
    if not 0 <= args.redis_ttl_jitter < 1:
        raise SystemExit(f"--redis_ttl_jitter must be in [0, 1), got {args.redis_ttl_jitter}")
    redis_url = args.redis_url or environ.get("REDIS_URL") or None
    if redis_url is not None:
        _check_redis_url(redis_url)
    cache = CacheSettings(
        local_max_entries=args.cache_size,
        local_ttl_seconds=args.cache_ttl_seconds,
        key_prefix=args.cache_key_prefix,
        redis_url=redis_url,
        redis_password=environ.get("REDIS_PASSWORD") or None,
        redis_timeout_seconds=args.redis_timeout_ms / 1000,
        redis_ttl_seconds=args.redis_ttl_seconds,
        redis_ttl_jitter=args.redis_ttl_jitter,
        redis_max_connections=args.redis_max_connections,
        redis_breaker_failures=args.redis_breaker_failures,
        redis_breaker_cooldown_seconds=args.redis_breaker_cooldown_seconds,
        redis_cluster=args.redis_cluster or _strtobool(environ.get("REDIS_CLUSTER") or "false"),
        redis_policy=args.redis_policy,
        signing_key=_signing_key(args.cache_signing_key or environ.get("CACHE_SIGNING_KEY")),
    )
    server = {
        "http_port": args.http_port,
        "grpc_port": args.grpc_port,
        "workers": args.workers,
        "max_threads": args.max_threads,
        "max_asyncio_workers": args.max_asyncio_workers,
        "enable_grpc": args.enable_grpc,
        "enable_docs_url": args.enable_docs_url,
        "enable_latency_logging": args.enable_latency_logging,
        "access_log_format": args.access_log_format,
        "event_loop": args.event_loop,
        "timeout_keep_alive": args.timeout_keep_alive,
    }
    return Settings(
        model_dir=args.model_dir,
        model_name=args.model_name,
        max_batch_size=args.max_batch_size,
        max_body_bytes=args.max_body_bytes,
        max_inflight=args.max_inflight,
        response_cache_size=args.response_cache_size,
        cache=cache,
        limits=ConnectionLimits(
            header_timeout_seconds=args.header_timeout_seconds,
            body_timeout_seconds=args.body_timeout_seconds,
            max_header_bytes=args.max_header_bytes,
            max_headers=args.max_headers,
            write_timeout_seconds=args.write_timeout_seconds,
            max_unsent_bytes_per_connection=args.max_unsent_bytes_per_connection,
            max_unsent_bytes=args.max_unsent_bytes,
        ),
        server=server,
        log_format=args.log_format,
        log_level=environ.get("KSERVE_LOGLEVEL", "INFO").upper(),
        model_wait_seconds=(
            args.model_wait_seconds if environ.get("MODEL_INIT_MODE") == ASYNC_MODE else 0.0
        ),
        enable_model_repository=args.enable_model_repository,
        unloaded_liveness_seconds=args.unloaded_liveness_seconds,
        client_error_log_lines_per_minute=args.client_error_log_lines_per_minute,
        offload_body_bytes=args.offload_body_bytes,
        grpc_reflection=args.enable_grpc_reflection,
    )
