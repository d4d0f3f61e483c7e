"""kserve's gRPC server, subclassed: an exclusive port, strict messages, true health, reflection.

kserve's `GRPCServer.start` builds a grpc.aio server with nothing to change it by. This
subclass builds the same server (kserve's servicer, its two interceptors, its message size
options) with four differences:

- the port is bound without `SO_REUSEPORT` (gRPC sets it by default): a second server on
  a taken port fails at start with one line, as uvicorn does for a taken HTTP port,
  instead of sharing the port and splitting traffic between two processes;
- requests arrive as bytes and are parsed here: a malformed message is `INVALID_ARGUMENT`
  ("malformed ModelInferRequest") with one short, rate-limited WARNING line (grpc's own
  deserializer failed the call as `UNKNOWN` with an internal class name and logged an
  ERROR traceback per call);
- `ServerReady` and `ServerLive` answer as REST readiness and liveness do
  (predictor.routes.health), so that they agree at every moment, an unload included;
- server reflection (grpcio-reflection) is on unless turned off;
- `ModelInfer` is the handler given (predictor.grpc_infer), past kserve's interceptors
  (it answers its own errors and logs its own lines; kserve's `LoggingInterceptor` formats
  an INFO line per call, its exception interceptor wraps every call in two coroutines).

`install` makes kserve's `ModelServer.start` build this server (kserve looks the class up
by name in `kserve.model_server`, as predictor.upstream.kserve_grpc_servicer does for the servicer).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable, Mapping
from concurrent import futures
from functools import partial
from typing import Any, Final

import grpc
import kserve.model_server
from google.protobuf.message import DecodeError, Message
from grpc import aio
from grpc_interceptor.exceptions import InvalidArgument
from grpc_reflection.v1alpha import reflection
from kserve.logging import logger as kserve_logger
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import server as grpc_server
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor, LoggingInterceptor

from predictor.routes.health import ModelPresence

logger: Final = logging.getLogger("kserve.predictor.grpc")

SERVICE: Final = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]


class PortInUse(SystemExit):
    """The gRPC port is taken: the process exits 1, as uvicorn's does for its port."""


class PredictorGrpcServer(grpc_server.GRPCServer):  # type: ignore[misc]
    """See the module docstring; constructed by kserve with `GRPCServer`'s arguments."""

    def __init__(
        self,
        *args: Any,
        health: GrpcHealth,
        reflection_on: bool,
        message_bounds: Mapping[str, int],
        model_infer: Handler | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._health = health
        self._model_infer = model_infer
        self._reflection_on = reflection_on
        # kserve hands over its own parse of sys.argv (`kwargs`); the settings' bounds win.
        self._bounds = message_bounds
        _refuse_taken(self._port)

    async def start(self, max_workers: int) -> None:
        servicer = grpc_server.InferenceServicer(self._data_plane, self._model_repository_extension)
        server = aio.server(
            futures.ThreadPoolExecutor(max_workers=max_workers),
            interceptors=(
                Bypassing(LoggingInterceptor(), OWN_ERRORS),
                Bypassing(ExceptionToStatusInterceptor(), OWN_ERRORS),
            )
            if self._model_infer
            else (LoggingInterceptor(), ExceptionToStatusInterceptor()),
            options=[
                ("grpc.max_send_message_length", self._bounds["grpc_max_send_message_length"]),
                (
                    "grpc.max_receive_message_length",
                    self._bounds["grpc_max_receive_message_length"],
                ),
                ("grpc.so_reuseport", 0),
            ],
        )
        overrides = {"ModelInfer": self._model_infer} if self._model_infer else {}
        server.add_generic_rpc_handlers((method_handlers(servicer, self._health, overrides),))
        if self._reflection_on:
            reflection.enable_server_reflection(
                (SERVICE.full_name, reflection.SERVICE_NAME), server
            )
        try:
            server.add_insecure_port(f"[::]:{self._port}")
        except RuntimeError:  # taken since `_refuse_taken` looked
            _port_in_use(self._port)
        self._server = server
        kserve_logger.info("Starting gRPC server on [::]:%d (%d workers)", self._port, max_workers)
        await server.start()
        await server.wait_for_termination()


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
    """`ServerReady` and `ServerLive` from the same truth as REST's (predictor.routes.health)."""

    def __init__(self, presence: ModelPresence, unloaded_liveness: float) -> None:
        self._presence = presence
        self._bound = unloaded_liveness

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Any) -> Message:
        return pb.ServerReadyResponse(ready=self._presence.gone_for() is None)

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Any) -> Message:
        gone = self._presence.gone_for()
        return pb.ServerLiveResponse(live=gone is None or gone < self._bound)


Handler = Callable[[Any, Any], Awaitable[Message]]
# The methods whose handlers answer their own errors: kserve's interceptors pass them by.
OWN_ERRORS: Final = frozenset({f"/{SERVICE.full_name}/ModelInfer"})


class Bypassing(aio.ServerInterceptor):  # type: ignore[misc]
    """`inner` for every method but those in `bypass`, which go straight to their handler."""

    def __init__(self, inner: aio.ServerInterceptor, bypass: frozenset[str]) -> None:
        self._inner = inner
        self._bypass = bypass

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        if handler_call_details.method in self._bypass:
            return await continuation(handler_call_details)
        return await self._inner.intercept_service(continuation, handler_call_details)


def method_handlers(
    servicer: Any, health: GrpcHealth, overrides: Mapping[str, Handler] | None = None
) -> grpc.GenericRpcHandler:
    """The service's handlers, each parsing its request from bytes (see `_parsed`):
    `overrides`' by method name, else `health`'s, else `servicer`'s."""
    overrides = overrides or {}
    handlers = {}
    for method in SERVICE.methods:
        if method.client_streaming or method.server_streaming:
            raise TypeError(f"{method.full_name} streams: only unary methods are handled")
        request_class = getattr(pb, method.input_type.name)
        response_class = getattr(pb, method.output_type.name)
        handle = (
            overrides.get(method.name)
            or getattr(health, method.name, None)
            or getattr(servicer, method.name)
        )
        parse = _parsed_aborting if method.name in overrides else _parsed
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            partial(parse, handle, request_class),
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


async def _parsed_aborting(
    handle: Handler, request_class: type[Message], raw: bytes, context: Any
) -> Message:
    """`_parsed` for a handler past kserve's interceptors: it aborts the call itself."""
    try:
        request = request_class.FromString(raw)
    except DecodeError:
        message = f"malformed {request_class.__name__}"
        logger.warning("gRPC: %s", message, extra={"client_error": True})
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, message)
    return await handle(request, context)


def install(
    presence: ModelPresence,
    unloaded_liveness: float,
    reflection_on: bool,
    message_bounds: Mapping[str, int],
    model_infer: Handler | None = None,
) -> None:
    """Have kserve's `ModelServer.start` build `PredictorGrpcServer`; `message_bounds`:
    `grpc_max_send_message_length` and `grpc_max_receive_message_length`; `model_infer`
    answers ModelInfer instead of kserve's servicer."""
    kserve.model_server.GRPCServer = partial(
        PredictorGrpcServer,
        health=GrpcHealth(presence, unloaded_liveness),
        reflection_on=reflection_on,
        message_bounds=message_bounds,
        model_infer=model_infer,
    )
