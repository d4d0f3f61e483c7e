"""What one gRPC client can cost: grpc-core's bounds, admission, and a server that restarts.

- `server_options`: the grpc.aio server's channel arguments from the settings' "gRPC
  bounds" group: streams per connection (advertised as SETTINGS_MAX_CONCURRENT_STREAMS),
  keepalive pings that close a connection whose peer stops answering (a client that never
  reads), connection idle and age bounds, the ping policy (GOAWAY to a PING flood) and the
  metadata caps (a CONTINUATION flood is closed).
- `CallBounds`: a call's request message must arrive within a bound; inference calls take
  a slot of the same `Admission` as REST's routes, and beyond `max_inflight` are refused
  at once with RESOURCE_EXHAUSTED.
- `serve_restarting`: runs a gRPC server and builds a new one when grpcio's serving loop
  dies under it (grpcio 1.85's aio server dies on a `:path` that is not UTF-8, see
  `serve_restarting`), so that one request cannot take gRPC down for good.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import grpc
from grpc import aio
from grpc._cython.cygrpc import ExecuteBatchError

from predictor.admission import Admission
from predictor.settings import Settings

logger: Final = logging.getLogger("kserve.predictor.grpc")

MS: Final = 1000
# The V2 methods that reach the model: each takes an admission slot.
ADMITTED_METHODS: Final = frozenset({"/inference.GRPCInferenceService/ModelInfer"})
# What grpcio logs at ERROR, with a traceback, when an answer cannot be sent (the client
# went away): client errors for predictor.logs (one short, rate-limited WARNING line).
SEND_FAILURES: Final[tuple[type[BaseException], ...]] = (ExecuteBatchError,)


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


class CallBounds(aio.ServerInterceptor):  # type: ignore[misc]
    """Every unary call's request message must arrive within `receive_seconds` of its
    headers (else DEADLINE_EXCEEDED, as REST answers 408: grpc-core never answers a
    message cut short by END_STREAM); inference calls then take a slot of `admission`
    (REST's) for as long as they run, and without one are answered RESOURCE_EXHAUSTED at
    once, never queued.

    The unary handler is served as a client-streaming one (the same on the wire): that is
    what lets it run, and time the message, before the message has arrived.
    """

    def __init__(self, admission: Admission, receive_seconds: float) -> None:
        self._admission = admission
        self._receive_seconds = receive_seconds

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or handler.request_streaming or handler.response_streaming:
            return handler
        inner = handler.unary_unary
        admission = self._admission if details.method in ADMITTED_METHODS else None
        receive_seconds = self._receive_seconds

        async def bounded(requests: Any, context: aio.ServicerContext) -> Any:
            try:
                request = await asyncio.wait_for(context.read(), receive_seconds)
            except TimeoutError:
                await context.abort(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"no complete request message within {receive_seconds:g} s",
                )
            if request is aio.EOF:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no request message")
            if admission is None:
                return await inner(request, context)
            if not admission.enter():
                await context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"overloaded: {admission.inflight} requests in flight; retry shortly",
                )
            try:
                return await inner(request, context)
            finally:
                admission.leave()

        return grpc.stream_unary_rpc_method_handler(
            bounded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


async def serve_restarting(build: Callable[[], Awaitable[aio.Server]]) -> None:
    """Serve the server `build()` starts; when it dies of anything but a stop, log one
    ERROR and serve a new one on the same port.

    Why it dies: grpcio 1.85.3, src/python/grpcio/grpc/_cython/_cygrpc/aio/server.pyx.pxi,
    `AioServer._server_main_loop` (line 1115 of the compiled module) decodes the `:path` of
    every call that matched no registered method with `rpc_state.method().decode()`, outside
    any handler; a byte that is not UTF-8 raises UnicodeDecodeError out of the serving
    loop, whose crash handler shuts the server down (cancelling every call in flight) and
    `wait_for_termination` re-raises it. Nothing before that line can be intercepted
    (interceptors and generic handlers run after it, and grpc-core passes the bytes on).
    """
    while True:
        server = await build()
        try:
            await server.wait_for_termination()
            return
        except Exception as e:  # the serving loop died: see the docstring
            logger.error("gRPC server failed (%s: %s): serving it anew", type(e).__name__, e)
