"""What one gRPC connection can cost: grpc-core's bounds, as the server's channel arguments.

From the settings' "gRPC bounds" group: streams per connection (advertised as
SETTINGS_MAX_CONCURRENT_STREAMS), keepalive pings, connection idle and age bounds (the age
bound and its grace are what close a connection whose client never reads: grpc-core sends
such a client no keepalive PING and never counts it idle), the ping policy (GOAWAY to a
PING flood) and the metadata caps. Per-call bounds (the request's arrival, admission) are
predictor.grpc.calls'.
"""

from __future__ import annotations

from typing import Final

from predictor.settings import Settings

MS: Final = 1000


def server_options(settings: Settings) -> list[tuple[str, int]]:
    """grpc-core channel arguments for the server (see the settings' gRPC bounds group)."""
    return [
        ("grpc.max_concurrent_streams", settings.grpc_max_concurrent_streams),
        ("grpc.keepalive_time_ms", round(settings.grpc_keepalive_seconds * MS)),
        ("grpc.keepalive_timeout_ms", round(settings.grpc_keepalive_timeout_seconds * MS)),
        ("grpc.max_connection_idle_ms", round(settings.grpc_max_connection_idle_seconds * MS)),
        ("grpc.max_connection_age_ms", round(settings.grpc_max_connection_age_seconds * MS)),
        (
            "grpc.max_connection_age_grace_ms",
            round(settings.grpc_max_connection_age_grace_seconds * MS),
        ),
        ("grpc.http2.max_ping_strikes", settings.grpc_max_ping_strikes),
        (
            "grpc.http2.min_ping_interval_without_data_ms",
            round(settings.grpc_min_ping_interval_seconds * MS),
        ),
        ("grpc.max_metadata_size", settings.grpc_max_metadata_bytes),
        ("grpc.absolute_max_metadata_size", settings.grpc_max_metadata_bytes),
    ]
