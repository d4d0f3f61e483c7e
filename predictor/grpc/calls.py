"""Per-call bookkeeping of gRPC calls: the request metric by the status the client got, and
the request id that log lines carry.

`CallTimer` is the outermost interceptor of the gRPC server: it times each ModelInfer call
in `housing_request_seconds{route="grpc"}` under the status the call ended with, as set by
the interceptors and handlers inside it (OK, INVALID_ARGUMENT, NOT_FOUND, ...). A call
whose handler is cancelled ended one of two ways, neither the server's fault: its deadline
passed (DEADLINE_EXCEEDED, what the client saw) or the client cancelled it (CANCELLED);
counted as INTERNAL, client timeouts would page as server errors.

`bind_request_id` sets predictor.logs.REQUEST_ID for the rest of the call, as REST does
from its headers: `x-request-id` metadata (or `x-b3-traceid`), else the request's own `id`.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final

import grpc
from grpc import aio

from predictor.logs import REQUEST_ID
from predictor.metrics import REQUEST_SECONDS
from predictor.upstream.prometheus_histogram import FastObserver

MODEL_INFER: Final = "/inference.GRPCInferenceService/ModelInfer"
ROUTE: Final = "grpc"
REQUEST_ID_KEYS: Final = ("x-request-id", "x-b3-traceid")


def status_name(context: Any) -> str | None:
    """The status the handlers set on `context` (grpc.aio's `code()`); None for none or OK."""
    code = context.code()
    if isinstance(code, int) and not isinstance(code, grpc.StatusCode):
        code = next((c for c in grpc.StatusCode if c.value[0] == code), None)
    if not isinstance(code, grpc.StatusCode) or code is grpc.StatusCode.OK:
        return None
    name: str = code.name
    return name


def cancelled_status(context: Any) -> str:
    """DEADLINE_EXCEEDED when the call's deadline has passed, else CANCELLED."""
    remaining = context.time_remaining()
    return "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"


class CallTimer(aio.ServerInterceptor):  # type: ignore[misc]
    """Times the unary calls of `methods` by final status (see the module docstring)."""

    def __init__(self, methods: Iterable[str] = (MODEL_INFER,)) -> None:
        self._methods = frozenset(methods)
        self._timers: dict[str, FastObserver] = {}

    def _timer(self, status: str) -> FastObserver:
        timer = self._timers.get(status)
        if timer is None:
            timer = self._timers[status] = FastObserver(REQUEST_SECONDS.labels(ROUTE, status))
        return timer

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None or details.method not in self._methods:
            return handler
        inner = handler.unary_unary

        async def timed(request: Any, context: Any) -> Any:
            started = time.perf_counter()
            status = "INTERNAL"
            try:
                response = inner(request, context)
                if inspect.isawaitable(response):
                    response = await response
                status = status_name(context) or "OK"
                return response
            except asyncio.CancelledError:
                status = cancelled_status(context)
                raise
            except BaseException:  # an abort sets the status; grpc answers the rest UNKNOWN
                status = status_name(context) or "UNKNOWN"
                raise
            finally:
                self._timer(status).observe(time.perf_counter() - started)

        return grpc.unary_unary_rpc_method_handler(
            timed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def bind_request_id(context: Any, request: Any) -> None:
    """Set REQUEST_ID for this call (see the module docstring)."""
    metadata = dict(context.invocation_metadata() or ())
    request_id = next((metadata[k] for k in REQUEST_ID_KEYS if metadata.get(k)), None)
    if request_id is None:
        request_id = getattr(request, "id", None)
    if request_id and isinstance(request_id, str):
        REQUEST_ID.set(request_id)
