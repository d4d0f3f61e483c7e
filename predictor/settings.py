"""Every setting of the server, declared once: type, default, bounds, help, environment.

`Settings` (pydantic-settings) is the one declaration. Each field is a flag of the same name
(`--max_batch_size`; kserve's own spellings where kserve has the flag, e.g.
`--event-loop`), and an environment variable `HOUSING_<NAME>` (`HOUSING_MAX_BATCH_SIZE`),
so that a Kubernetes manifest can set any of them without touching `args`. A few fields
also answer to the names KServe and the manifests already use (`REDIS_URL`,
`KSERVE_LOGLEVEL`, `MODEL_INIT_MODE`, ...). A flag beats the environment, which beats the
default. Secrets (the Redis password) come from the environment only.

kserve's ModelServer flags that this server honours are declared here with kserve's names
and defaults (tests/test_settings.py checks them against kserve's parser), except where
this server's default differs on purpose (`--model_name housing`, `--enable_docs_url true`,
`--enable_latency_logging false`). kserve's transformer flags (`--predictor_host`, ...) and
logging-file flags do nothing here and are not offered.

`parse_settings` runs once, in `main()`; the components take the typed views
(`CacheSettings`, `ConnectionLimits`), which restate no default. The flags and `--help`
are predictor.settings_cli's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import Field, field_validator
from pydantic.config import JsonDict
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from predictor.cache.urls import check_redis_url

ENV_PREFIX: Final = "HOUSING_"
# KServe's MODEL_INIT_MODE for a model directory that appears after start-up.
ASYNC_MODE: Final = "async"
MIN_SIGNING_KEY_CHARS: Final = 16
_MASK: Final = "***"
# kserve's own defaults for the flags of its it does not let us change (checked against
# kserve's parser by tests/test_settings.py; kserve must not be imported here: its import
# parses sys.argv).
KSERVE_HTTP_PORT: Final = 8080
KSERVE_GRPC_PORT: Final = 8081
KSERVE_MAX_GRPC_MESSAGE_LENGTH: Final = 8 * 1024 * 1024

GROUPS: Final = {
    "model": "The model",
    "requests": "Requests",
    "cache": "Prediction cache",
    "connections": "Bounds on what one client can cost",
    "grpc_bounds": "gRPC bounds: what one gRPC client can cost",
    "server": "HTTP and gRPC (kserve's ModelServer flags)",
    "logging": "Logging",
}


def setting(
    default: Any,
    help: str,
    *,
    group: str,
    flag: str | None = None,
    env: tuple[str, ...] = (),
    cli: bool = True,
    secret: bool = False,
    **constraints: Any,
) -> Any:
    """A field of `Settings`: its default, bounds, help, and how it is set.

    `flag`: the flag's spelling when it is not `--<field name>` (kserve's dashed ones);
    `env`: names it also answers to besides `HOUSING_<NAME>`; `cli=False`: environment only;
    `secret`: never echoed, not even in an error message.
    """
    extra: JsonDict = {"group": group, "flag": flag, "env": [*env], "cli": cli, "secret": secret}
    return Field(default, description=help, json_schema_extra=extra, **constraints)


Policy = Literal["always", "never", "auto"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class Settings(BaseSettings):
    """See the module docstring."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_ignore_empty=True, frozen=True, extra="forbid"
    )

    # -- the model ------------------------------------------------------------------------
    model_dir: Path = setting(..., "Trained model directory.", group="model")
    model_name: str = setting(
        "housing", "The model's name in the V1 and V2 paths (kserve's flag).", group="model"
    )
    model_wait_seconds: float = setting(
        120.0,
        "With MODEL_INIT_MODE=async (KServe, for a modelcar): how long to wait for the "
        "model directory to appear before giving up.",
        group="model",
        ge=0,
    )
    model_init_mode: str | None = setting(
        None,
        "Set by KServe: `async` when the model arrives after the server starts (a modelcar).",
        group="model",
        env=("MODEL_INIT_MODE",),
        cli=False,
    )

    # -- requests -------------------------------------------------------------------------
    max_batch_size: int = setting(
        1000, "Rows per request; more is refused with a 4xx.", group="requests", gt=0
    )
    max_body_bytes: int = setting(
        2 * 1024 * 1024, "Request body cap in bytes (then 413).", group="requests", gt=0
    )
    max_inflight: int = setting(
        256,
        "In-flight inference requests beyond which new ones get 503 (keep it at or above "
        "the InferenceService's containerConcurrency).",
        group="requests",
        gt=0,
    )
    response_cache_size: int = setting(
        1024,
        "Whole /predict answers remembered by exact request body (bodies up to 4 KiB; 0 "
        "turns the memo off).",
        group="requests",
        ge=0,
    )
    offload_body_bytes: int = setting(
        64 * 1024,
        "Request bodies above this size are decoded and checked off the event loop.",
        group="requests",
        gt=0,
    )

    # -- the cache ------------------------------------------------------------------------
    cache_size: int = setting(100_000, "In-process LRU entries.", group="cache", gt=0)
    cache_ttl_seconds: float = setting(3600.0, "In-process LRU time-to-live.", group="cache", gt=0)
    cache_key_prefix: str = setting(
        "housing", "First part of every cache key: PREFIX:VERSION:ROW_MD5.", group="cache"
    )
    redis_url: str | None = setting(
        None,
        "URL of the shared Redis tier: redis://, rediss:// (TLS) or redis+sentinel://; "
        "none: the in-process cache only.",
        group="cache",
        env=("REDIS_URL",),
        secret=True,
    )
    redis_password: str | None = setting(
        None,
        "Redis password when the URL has none (environment only, e.g. from a Secret).",
        group="cache",
        env=("REDIS_PASSWORD",),
        cli=False,
        secret=True,
    )
    redis_cluster: bool = setting(
        False,
        "Treat the Redis URL as any node of a Redis Cluster.",
        group="cache",
        env=("REDIS_CLUSTER",),
    )
    redis_policy: Policy = setting(
        "always",
        "Consult Redis always, never, or auto: only when the model's cost per row (timed at "
        "start-up) exceeds a Redis round trip.",
        group="cache",
    )
    cache_signing_key: str | None = setting(
        None,
        f"Sign Redis values with this key (at least {MIN_SIGNING_KEY_CHARS} characters); "
        "unsigned or wrongly signed values are misses.",
        group="cache",
        env=("CACHE_SIGNING_KEY",),
        secret=True,
    )
    redis_timeout_ms: float = setting(
        50.0, "Deadline of one Redis exchange (milliseconds).", group="cache", gt=0
    )
    redis_ttl_seconds: float = setting(
        86400.0, "Redis time-to-live, before jitter.", group="cache", gt=0
    )
    redis_ttl_jitter: float = setting(
        0.1,
        "Relative spread of Redis TTLs (0.1: +-10%), so a burst of writes does not expire at once.",
        group="cache",
        ge=0,
        lt=1,
    )
    redis_max_connections: int = setting(
        32,
        "Redis exchanges in flight per process (a cluster: connections per node).",
        group="cache",
        gt=0,
    )
    redis_breaker_failures: int = setting(
        3, "Consecutive failed Redis exchanges that open the breaker.", group="cache", gt=0
    )
    redis_breaker_cooldown_seconds: float = setting(
        5.0, "How long an open breaker skips Redis before probing it.", group="cache", gt=0
    )

    # -- what one client can cost ---------------------------------------------------------
    header_timeout_seconds: float = setting(
        5.0,
        "Time to receive a request's line and headers, from the connection opening or the "
        "first byte of a later request on it (then 408 and close).",
        group="connections",
        gt=0,
    )
    body_timeout_seconds: float = setting(
        10.0,
        "Time to receive a request's body once its headers are in (then 408 and close).",
        group="connections",
        gt=0,
    )
    max_header_bytes: int = setting(
        64 * 1024,
        "Bytes of request line and headers (then 431 and close).",
        group="connections",
        gt=0,
    )
    max_headers: int = setting(
        128,
        "Header fields per request (then 431 and close): above Envoy's 100, so what the mesh "
        "lets through, plus what the proxies on the way add, is accepted.",
        group="connections",
        gt=0,
    )
    write_timeout_seconds: float = setting(
        5.0,
        "Time a client has to take its answers once 64 KiB of them wait (then the "
        "connection is dropped and its request freed).",
        group="connections",
        gt=0,
    )
    max_unsent_bytes_per_connection: int = setting(
        256 * 1024,
        "Unsent answer bytes one connection may hold when another answer is ready (then it "
        "is dropped): only a client pipelining without reading comes near it.",
        group="connections",
        gt=0,
    )
    max_unsent_bytes: int = setting(
        64 * 1024 * 1024,
        "Unsent answer bytes of all connections together (beyond it, the longest stalled "
        "are dropped).",
        group="connections",
        gt=0,
    )

    # -- HTTP and gRPC --------------------------------------------------------------------
    http_port: int = setting(
        KSERVE_HTTP_PORT,
        "HTTP port (kserve switches to 8443 when TLS is on and this is left at 8080).",
        group="server",
        gt=0,
        lt=65536,
    )
    grpc_port: int = setting(KSERVE_GRPC_PORT, "gRPC port.", group="server", gt=0, lt=65536)
    workers: int = setting(
        1,
        "uvicorn worker processes: must be 1 (extra processes would lack this server's "
        "routes); scale out with replicas instead.",
        group="server",
    )
    enable_grpc: bool = setting(True, "Serve gRPC (the V2 protocol).", group="server")
    max_threads: int = setting(4, "gRPC worker threads.", group="server", gt=0)
    grpc_max_send_message_length: int = setting(
        KSERVE_MAX_GRPC_MESSAGE_LENGTH, "Largest gRPC message sent (bytes).", group="server", gt=0
    )
    grpc_max_receive_message_length: int = setting(
        KSERVE_MAX_GRPC_MESSAGE_LENGTH,
        "Largest gRPC message received (bytes).",
        group="server",
        gt=0,
    )
    enable_grpc_reflection: bool = setting(
        True,
        "Serve gRPC server reflection (grpcurl, Postman and the like list and call the "
        "service without its .proto).",
        group="server",
    )
    max_asyncio_workers: int | None = setting(
        None,
        "Threads of the event loop's default executor (model calls on large batches); none: "
        "min(32, CPUs + 4).",
        group="server",
        gt=0,
    )
    event_loop: Literal["auto", "asyncio", "uvloop"] = setting(
        "auto", "Event loop: auto (uvloop when installed), asyncio or uvloop.",
        group="server", flag="--event-loop",
    )  # fmt: skip
    timeout_keep_alive: int = setting(
        65,
        "Seconds an idle kept-alive connection stays open: longer than the idle timeout of "
        "the proxies in front (Envoy), so they close first.",
        group="server",
        flag="--timeout-keep-alive",
        gt=0,
    )
    ssl_certfile: str | None = setting(
        None,
        "Serve HTTPS, and gRPC over TLS, with this certificate (PEM) and --ssl_keyfile.",
        group="server",
        env=("KSERVE_TLS_CERT_FILE",),
    )
    ssl_keyfile: str | None = setting(
        None,
        "The private key (PEM) of --ssl_certfile.",
        group="server",
        env=("KSERVE_TLS_KEY_FILE",),
    )
    enable_docs_url: bool = setting(
        True, "Serve Swagger UI at /docs (bundled; no CDN).", group="server"
    )
    enable_model_repository: bool = setting(
        False,
        "Serve the V2 model repository API (load/unload); off, it answers 403 (gRPC: "
        "PERMISSION_DENIED).",
        group="server",
    )
    unloaded_liveness_seconds: float = setting(
        10.0,
        "How long liveness stays 200 once the model is gone (readiness fails at once).",
        group="server",
        gt=0,
    )

    # -- gRPC bounds (predictor.grpc.bounds: grpc-core's channel arguments) --------------
    grpc_max_concurrent_streams: int = setting(
        100,
        "Streams one gRPC connection may have open (advertised as HTTP/2 "
        "SETTINGS_MAX_CONCURRENT_STREAMS); more are refused by the client's own stack.",
        group="grpc_bounds",
        gt=0,
    )
    grpc_keepalive_seconds: float = setting(
        10.0,
        "Idle seconds after which the server PINGs a gRPC connection; one whose peer does "
        "not answer within --grpc_keepalive_timeout_seconds is closed (a peer that is gone).",
        group="grpc_bounds",
        gt=0,
    )
    grpc_keepalive_timeout_seconds: float = setting(
        5.0,
        "Seconds a gRPC keepalive PING waits for its answer before the connection is closed.",
        group="grpc_bounds",
        gt=0,
    )
    grpc_max_connection_idle_seconds: float = setting(
        300.0,
        "Seconds a gRPC connection with no call in flight stays open (then GOAWAY).",
        group="grpc_bounds",
        gt=0,
    )
    grpc_max_connection_age_seconds: float = setting(
        1800.0,
        "Seconds a gRPC connection lives at most (then GOAWAY; clients reconnect, which "
        "also spreads them over new replicas). With its grace, what closes a connection "
        "whose client never reads its answers.",
        group="grpc_bounds",
        gt=0,
    )
    grpc_max_connection_age_grace_seconds: float = setting(
        30.0,
        "Seconds the calls of a connection past its age may still take before it is closed.",
        group="grpc_bounds",
        gt=0,
    )
    grpc_min_ping_interval_seconds: float = setting(
        10.0,
        "Shortest interval between a client's PINGs; each sooner one is a strike.",
        group="grpc_bounds",
        gt=0,
    )
    grpc_max_ping_strikes: int = setting(
        2,
        "PINGs sooner than --grpc_min_ping_interval_seconds a connection may send before it "
        "gets GOAWAY (ENHANCE_YOUR_CALM) and is closed.",
        group="grpc_bounds",
        ge=1,
    )
    grpc_receive_timeout_seconds: float = setting(
        10.0,
        "Time for a gRPC call's request message to arrive once its headers are in (then "
        "DEADLINE_EXCEEDED; a message cut short by END_STREAM is never answered otherwise).",
        group="grpc_bounds",
        gt=0,
    )
    grpc_max_metadata_bytes: int = setting(
        16 * 1024,
        "Largest header block of a gRPC call (HEADERS and CONTINUATION frames); a larger "
        "complete block is refused and the stream reset.",
        group="grpc_bounds",
        gt=0,
    )

    # -- logging --------------------------------------------------------------------------
    log_format: Literal["json", "text"] = setting(
        "json", "Log lines as one JSON object each, or as text.", group="logging"
    )
    log_level: LogLevel = setting(
        "INFO", "Level of the server's logs.", group="logging", env=("KSERVE_LOGLEVEL",)
    )
    enable_latency_logging: bool = setting(
        False,
        "kserve's log line per request with its stage timings (the metrics have them).",
        group="logging",
    )
    access_log_format: str | None = setting(
        None,
        "uvicorn's access log format (kserve's flag; asgi-logger fields); none: no access log.",
        group="logging",
    )
    client_error_log_lines_per_minute: float = setting(
        60.0,
        "Client-error log lines (one short WARNING each) beyond which they are dropped.",
        group="logging",
        gt=0,
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("workers")
    @classmethod
    def _one_worker(cls, value: int) -> int:
        if value != 1:
            raise ValueError("must be 1: scale out with replicas instead")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None:
            check_redis_url(value)
        return value

    @field_validator("cache_signing_key")
    @classmethod
    def _signing_key(cls, value: str | None) -> str | None:
        if value is not None and len(value) < MIN_SIGNING_KEY_CHARS:
            raise ValueError(
                f"must be at least {MIN_SIGNING_KEY_CHARS} characters (e.g. `openssl rand -hex 32`)"
            )
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags (given as init values), then HOUSING_*, then the names others use."""
        return init_settings, env_settings, KnownNames(settings_cls)

    # -- the views the components take ----------------------------------------------------

    @property
    def cache(self) -> CacheSettings:
        return CacheSettings(
            local_max_entries=self.cache_size,
            local_ttl_seconds=self.cache_ttl_seconds,
            key_prefix=self.cache_key_prefix,
            redis_url=self.redis_url,
            redis_password=self.redis_password,
            redis_timeout_seconds=self.redis_timeout_ms / 1000,
            redis_ttl_seconds=self.redis_ttl_seconds,
            redis_ttl_jitter=self.redis_ttl_jitter,
            redis_max_connections=self.redis_max_connections,
            redis_breaker_failures=self.redis_breaker_failures,
            redis_breaker_cooldown_seconds=self.redis_breaker_cooldown_seconds,
            redis_cluster=self.redis_cluster,
            redis_policy=self.redis_policy,
            signing_key=self.cache_signing_key.encode() if self.cache_signing_key else None,
        )

    @property
    def limits(self) -> ConnectionLimits:
        return ConnectionLimits(
            header_timeout_seconds=self.header_timeout_seconds,
            body_timeout_seconds=self.body_timeout_seconds,
            max_header_bytes=self.max_header_bytes,
            max_headers=self.max_headers,
            write_timeout_seconds=self.write_timeout_seconds,
            max_unsent_bytes_per_connection=self.max_unsent_bytes_per_connection,
            max_unsent_bytes=self.max_unsent_bytes,
        )

    @property
    def model_wait(self) -> float:
        """How long to wait for the model directory: only when KServe says it comes later."""
        return self.model_wait_seconds if self.model_init_mode == ASYNC_MODE else 0.0

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            secret = name is not None and value is not None and field_extra(name)["secret"]
            yield name, (_MASK if secret else value)


class KnownNames(PydanticBaseSettingsSource):
    """The environment variables other parts already use for some settings (KServe's
    `KSERVE_LOGLEVEL`, `MODEL_INIT_MODE`, the manifests' `REDIS_URL`, ...)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        for name in field_extra(field_name)["env"]:
            value = os.environ.get(name)
            if value:
                return value, name, False
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        found = {}
        for name, info in self.settings_cls.model_fields.items():
            value, _, _ = self.get_field_value(info, name)
            if value is not None:
                found[name] = value
        return found


@dataclass(frozen=True)
class CacheSettings:
    """What the cache tiers take (predictor.cache.tiers.build_cache)."""

    local_max_entries: int
    local_ttl_seconds: float
    key_prefix: str
    redis_url: str | None = field(repr=False)
    redis_password: str | None = field(repr=False)
    redis_timeout_seconds: float
    redis_ttl_seconds: float
    redis_ttl_jitter: float
    redis_max_connections: int
    redis_breaker_failures: int
    redis_breaker_cooldown_seconds: float
    redis_cluster: bool
    redis_policy: str
    signing_key: bytes | None = field(repr=False)


@dataclass(frozen=True)
class ConnectionLimits:
    """Bounds on what one HTTP connection may cost (predictor.upstream.uvicorn_protocol);
    each is the `Settings` field of the same name."""

    header_timeout_seconds: float
    body_timeout_seconds: float
    max_header_bytes: int
    max_headers: int
    write_timeout_seconds: float
    max_unsent_bytes_per_connection: int
    max_unsent_bytes: int


def field_extra(name: str) -> dict[str, Any]:
    """A setting's own declarations beyond pydantic's: flag, variables, group, secret."""
    extra = Settings.model_fields[name].json_schema_extra
    assert isinstance(extra, dict)
    return extra
