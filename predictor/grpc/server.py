"""The gRPC server: built here on grpc.aio, with kserve's V2 protos.

What it serves:
- the V2 service (`inference.GRPCInferenceService`), each method through one wrapper
  (predictor.grpc.calls: the request's arrival bounded, parsed here, its request id, its
  error as a status, admission and timing for ModelInfer): ModelInfer on the project's
  own path (predictor.grpc.infer), ServerReady and ServerLive as REST's readiness and
  liveness (predictor.grpc.health), repository load and unload in every client's layout
  (predictor.grpc.repository), metadata and model readiness from kserve's servicer;
- `grpc.health.v1.Health`, and server reflection (v1 and v1alpha) unless turned off.

How it listens: the port is bound without `SO_REUSEPORT` (gRPC sets it by default), so a
second server on a taken port fails at start with one line, as uvicorn does for a taken
HTTP port, instead of sharing the port and splitting traffic between two processes; over
TLS when a certificate is given (predictor.grpc.tls); with grpc-core's connection bounds
(predictor.grpc.bounds). predictor.server starts, supervises and stops it.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from concurrent import futures
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

import grpc
from grpc import aio
from kserve.logging import logger as kserve_logger
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

from predictor.grpc.calls import Calls
from predictor.grpc.health import SERVICE_NAME as HEALTH_SERVICE
from predictor.grpc.health import Health, V2Health, add_health
from predictor.grpc.reflection import add_reflection
from predictor.grpc.repository import RepositoryRpcs, repository_request
from predictor.grpc.tls import add_port

SERVICE: Final = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
MODEL_INFER: Final = "ModelInfer"
_REPOSITORY_METHODS: Final = frozenset({"RepositoryModelLoad", "RepositoryModelUnload"})


class PortInUse(SystemExit):
    """The gRPC port is taken: the process exits 1, as uvicorn's does for its port."""


@dataclass(frozen=True)
class GrpcConfig:
    """How the gRPC server listens (from predictor.settings)."""

    port: int
    max_threads: int
    reflection: bool
    options: Sequence[tuple[str, int]]
    """grpc-core channel arguments: message sizes, predictor.grpc.bounds' bounds."""
    tls: grpc.ServerCredentials | None


@dataclass(frozen=True)
class GrpcServices:
    """What the V2 service's methods are answered by."""

    kserve: Any
    """kserve's servicer (predictor.upstream.kserve_grpc_servicer): metadata, model ready."""
    model_infer: Any
    """predictor.grpc.infer.ModelInferServicer."""
    health: V2Health
    health_v1: Health
    """`grpc.health.v1.Health`, for `SERVICE` (and the server, `""`)."""
    repository: RepositoryRpcs
    calls: Calls


def build_grpc_server(config: GrpcConfig, services: GrpcServices) -> aio.Server:
    """The server, its port bound (exits 1 if taken), not started."""
    server = aio.server(
        futures.ThreadPoolExecutor(max_workers=config.max_threads),
        options=[*config.options, ("grpc.so_reuseport", 0)],
    )
    server.add_generic_rpc_handlers((method_handlers(services),))
    add_health(server, services.health_v1)
    if config.reflection:
        add_reflection(server, (SERVICE.full_name, HEALTH_SERVICE))
    _refuse_taken(config.port)
    try:
        add_port(server, f"[::]:{config.port}", config.tls)
    except RuntimeError:  # taken since `_refuse_taken` looked
        _port_in_use(config.port)
    kserve_logger.info(
        "Starting gRPC server on [::]:%d (%d workers%s)",
        config.port,
        config.max_threads,
        ", TLS" if config.tls is not None else "",
    )
    return server


def method_handlers(services: GrpcServices) -> grpc.GenericRpcHandler:
    """The V2 service's handlers (see the module docstring)."""
    handlers = {}
    for method in SERVICE.methods:
        if method.client_streaming or method.server_streaming:
            raise TypeError(f"{method.full_name} streams: only unary methods are handled")
        name = method.name
        request_class = getattr(pb, method.input_type.name)
        response_class = getattr(pb, method.output_type.name)
        answering = (services.model_infer, services.health, services.repository)
        handle = next(
            (getattr(s, name) for s in answering if hasattr(s, name)),
            getattr(services.kserve, name),
        )
        parse = (
            partial(repository_request, request_class)
            if name in _REPOSITORY_METHODS
            else request_class.FromString
        )
        infer = name == MODEL_INFER
        handlers[name] = services.calls.handler(
            f"/{SERVICE.full_name}/{name}",
            handle,
            parse,
            response_class.SerializeToString,
            admitted=infer,
            timed=infer,
        )
    return grpc.method_handlers_generic_handler(SERVICE.full_name, handlers)


def _refuse_taken(port: int) -> None:
    """Exit at once, before any server starts, when a listener holds `port`, with or
    without SO_REUSEPORT (this probe does not set it; SO_REUSEADDR lets it pass the
    TIME_WAIT connections of a previous run, as gRPC's own bind does)."""
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # as gRPC binds [::]
        address = "::"
    except OSError:  # no IPv6 here: gRPC binds 0.0.0.0
        probe, address = socket.socket(socket.AF_INET), "0.0.0.0"
    with probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError:
            _port_in_use(port)


def _port_in_use(port: int) -> None:
    kserve_logger.error("gRPC port %d is in use: is another server running?", port)
    raise PortInUse(1)
