"""The gRPC server: built here on grpc.aio, with kserve's V2 servicer and protos.

Compared with kserve's own `GRPCServer`:
- the port is bound without `SO_REUSEPORT` (gRPC sets it by default): a second server on
  a taken port fails at start with one line, as uvicorn does for a taken HTTP port,
  instead of sharing the port and splitting traffic between two processes;
- requests arrive as bytes and are parsed here: a malformed message is `INVALID_ARGUMENT`
  ("malformed ModelInferRequest") with one short, rate-limited WARNING line (grpc's own
  deserializer failed the call as `UNKNOWN` with an internal class name and logged an
  ERROR traceback per call);
- `ServerReady` and `ServerLive` answer as REST readiness and liveness do
  (predictor.rest.routes.health), so that they agree at every moment, an unload included;
- server reflection (grpcio-reflection) is on unless turned off.

predictor.server starts, supervises and stops it.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable
from concurrent import futures
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

import grpc
from google.protobuf.message import DecodeError, Message
from grpc import aio
from grpc_interceptor.exceptions import InvalidArgument
from grpc_reflection.v1alpha import reflection
from kserve.logging import logger as kserve_logger
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor, LoggingInterceptor

from predictor.model.housing.housing.housing.housing.presence import ModelPresence

logger: Final = logging.getLogger("kserve.predictor.grpc")

SERVICE: Final = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]


class PortInUse(SystemExit):
    """The gRPC port is taken: the process exits 1, as uvicorn's does for its port."""


@dataclass(frozen=True)
class GrpcConfig:
    """How the gRPC server is built (from predictor.settings)."""

    port: int
    max_threads: int
    reflection: bool
    max_send_message_length: int
    max_receive_message_length: int


def build_grpc_server(config: GrpcConfig, servicer: Any, health: GrpcHealth) -> aio.Server:
    """The server, its port bound (exits 1 if taken), not started."""
    server = aio.server(
        futures.ThreadPoolExecutor(max_workers=config.max_threads),
        interceptors=(LoggingInterceptor(), ExceptionToStatusInterceptor()),
        options=[
            ("grpc.max_send_message_length", config.max_send_message_length),
            ("grpc.max_receive_message_length", config.max_receive_message_length),
            ("grpc.so_reuseport", 0),
        ],
    )
    server.add_generic_rpc_handlers((method_handlers(servicer, health),))
    if config.reflection:
        reflection.enable_server_reflection((SERVICE.full_name, reflection.SERVICE_NAME), server)
    _refuse_taken(config.port)
    try:
        server.add_insecure_port(f"[::]:{config.port}")
    except RuntimeError:  # taken since `_refuse_taken` looked
        _port_in_use(config.port)
    kserve_logger.info(
        "Starting gRPC server on [::]:%d (%d workers)", config.port, config.max_threads
    )
    return server


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


class GrpcHealth:
    """`ServerReady` and `ServerLive` from the same truth as REST's readiness and liveness."""

    def __init__(self, presence: ModelPresence, unloaded_liveness: float) -> None:
        self._presence = presence
        self._bound = unloaded_liveness

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Any) -> Message:
        return pb.ServerReadyResponse(ready=self._presence.gone_for() is None)

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Any) -> Message:
        gone = self._presence.gone_for()
        return pb.ServerLiveResponse(live=gone is None or gone < self._bound)


Handler = Callable[[Any, Any], Awaitable[Message]]


def method_handlers(servicer: Any, health: GrpcHealth) -> grpc.GenericRpcHandler:
    """The service's handlers, each parsing its request from bytes (see `_parsed`)."""
    handlers = {}
    for method in SERVICE.methods:
        if method.client_streaming or method.server_streaming:
            raise TypeError(f"{method.full_name} streams: only unary methods are handled")
        request_class = getattr(pb, method.input_type.name)
        response_class = getattr(pb, method.output_type.name)
        handle = getattr(health, method.name, None) or getattr(servicer, method.name)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            partial(_parsed, handle, request_class),
            request_deserializer=None,
            response_serializer=response_class.SerializeToString,
        )
    return grpc.method_handlers_generic_handler(SERVICE.full_name, handlers)


async def _parsed(
    handle: Handler, request_class: type[Message], raw: bytes, context: Any
) -> Message:
    try:
        request = request_class.FromString(raw)
    except DecodeError:
        message = f"malformed {request_class.__name__}"
        logger.warning("gRPC: %s", message, extra={"client_error": True})
        raise InvalidArgument(message) from None
    return await handle(request, context)
