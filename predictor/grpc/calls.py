"""One wrapper around every call of the V2 gRPC service: what each call gets, in order.

1. Its request message within `receive_seconds` of its headers, else DEADLINE_EXCEEDED
   (as REST answers 408); a stream that ends before its message (a message shorter than
   its length prefix, then END_STREAM) is INVALID_ARGUMENT at once. grpc-core never
   answers that case for a unary handler, so each method is served as a client-streaming
   one (the same on the wire), which lets the wrapper run before the message arrives.
2. The message parsed here from bytes: a malformed one is INVALID_ARGUMENT ("malformed
   ModelInferRequest"), where grpc's own deserializer failed the call as UNKNOWN with a
   traceback.
3. Its request id bound for every log line written while it runs (predictor.logs): the
   `x-request-id` metadata (or `x-b3-traceid`), else the request's own `id`.
4. For calls that reach the model (`admitted`), a slot of the same `Admission` as REST's
   routes, or UNAVAILABLE at once beyond `max_inflight` (REST's 503: retried elsewhere by
   clients and meshes, as overload should be), never a queue.
5. Its error as a status: kserve's exceptions as kserve's interceptor mapped them, a
   grpc_interceptor exception as its own status; a client's error is one short,
   rate-limited WARNING line, and only a server error (INTERNAL) logs a traceback.
6. For `timed` calls, its time in `housing_request_seconds{route="grpc"}` under the
   status the client got: a call whose handler is cancelled is DEADLINE_EXCEEDED when its
   deadline passed, else CANCELLED (counted as INTERNAL, client timeouts would page as
   server errors). Each status's child is looked up once.

kserve's own interceptors are not used: they log an INFO line per call and a traceback
per client error, and wrap each call in two more coroutines.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import grpc
from google.protobuf.message import DecodeError, Message
from grpc import aio
from grpc_interceptor.exceptions import GrpcException
from kserve.errors import (
    InferenceError,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    ServerNotLive,
    ServerNotReady,
    UnsupportedProtocol,
)

from predictor.admission import Admission
from predictor.logs import REQUEST_ID
from predictor.metrics import REQUEST_SECONDS
from predictor.upstream.prometheus_histogram import FastObserver

logger: Final = logging.getLogger("kserve.predictor.grpc")

ROUTE: Final = "grpc"
REQUEST_ID_KEYS: Final = ("x-request-id", "x-b3-traceid")
INTERNAL_MESSAGE: Final = "Internal server error"
# The client's deadline fires first and its stream reset arrives before the server's own
# copy of the deadline (sent as `grpc-timeout`, counted from a transit later) has passed:
# a cancel this close to the deadline is the deadline's, not the client's choice.
DEADLINE_SLACK_SECONDS: Final = 0.1
# kserve's exceptions and the status its gRPC interceptor gave each.
_KSERVE_STATUS: Final[tuple[tuple[tuple[type[Exception], ...], grpc.StatusCode], ...]] = (
    ((InvalidInput, InferenceError, UnsupportedProtocol), grpc.StatusCode.INVALID_ARGUMENT),
    ((ServerNotReady, ServerNotLive, ModelNotReady), grpc.StatusCode.UNAVAILABLE),
    ((ModelNotFound,), grpc.StatusCode.NOT_FOUND),
    ((NotImplementedError,), grpc.StatusCode.UNIMPLEMENTED),
)

Handle = Callable[[Any, Any], Awaitable[Message]]
Parse = Callable[[bytes], Message]


class Calls:
    """Builds each method's handler (see the module docstring)."""

    def __init__(self, admission: Admission, receive_seconds: float) -> None:
        self._admission = admission
        self._receive_seconds = receive_seconds
        self._timers: dict[str, FastObserver] = {}

    def handler(
        self,
        method: str,
        handle: Handle,
        parse: Parse,
        serialize: Callable[[Any], bytes],
        *,
        admitted: bool = False,
        timed: bool = False,
    ) -> grpc.RpcMethodHandler:
        """`handle(request, context)` for `method`, its request read by `parse`."""

        async def call(requests: Any, context: aio.ServicerContext[Any, Any]) -> Message:
            started = time.perf_counter()
            status = "INTERNAL"
            try:
                request = parse_or_refuse(await self._receive(context))
                response = await self._run(handle, request, context, admitted)
                status = status_name(context) or "OK"
                return response
            except _Refusal as e:
                status = e.code.name
                await _refuse(context, method, e.code, e.message)
                raise AssertionError("context.abort returned") from e  # it raises
            except asyncio.CancelledError:
                status = cancelled_status(context)
                raise
            except BaseException:  # the handler aborted: that set the status
                status = status_name(context) or "UNKNOWN"
                raise
            finally:
                if timed:
                    self._timer(status).observe(time.perf_counter() - started)

        def parse_or_refuse(raw: bytes) -> Message:
            try:
                return parse(raw)
            except DecodeError:
                raise _Refusal(grpc.StatusCode.INVALID_ARGUMENT, f"malformed {kind}") from None

        kind = method.rpartition("/")[2] + "Request"
        return grpc.stream_unary_rpc_method_handler(
            call, request_deserializer=None, response_serializer=serialize
        )

    async def _receive(self, context: aio.ServicerContext[Any, Any]) -> bytes:
        try:
            async with asyncio.timeout(self._receive_seconds):
                raw = await context.read()
        except TimeoutError:
            seconds = self._receive_seconds
            message = f"no complete request message within {seconds:g} s"
            raise _Refusal(grpc.StatusCode.DEADLINE_EXCEEDED, message) from None
        if raw is aio.EOF:
            raise _Refusal(grpc.StatusCode.INVALID_ARGUMENT, "no request message")
        data: bytes = raw
        return data

    async def _run(
        self,
        handle: Handle,
        request: Message,
        context: aio.ServicerContext[Any, Any],
        admitted: bool,
    ) -> Message:
        bind_request_id(context, request)
        admission = self._admission
        if admitted and not admission.enter():
            raise _Refusal(grpc.StatusCode.UNAVAILABLE, admission.shed_message())
        try:
            return await _answered(handle, request, context)
        finally:
            if admitted:
                admission.leave()

    def _timer(self, status: str) -> FastObserver:
        timer = self._timers.get(status)
        if timer is None:
            timer = self._timers[status] = FastObserver(REQUEST_SECONDS.labels(ROUTE, status))
        return timer


class _Refusal(Exception):
    """A call refused with `code`; raised out of the handler, aborted by the wrapper."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


async def _answered(
    handle: Handle, request: Message, context: aio.ServicerContext[Any, Any]
) -> Message:
    """`handle`'s answer; any exception but an abort or a cancel as a `_Refusal`."""
    try:
        return await handle(request, context)
    except (aio.AbortError, asyncio.CancelledError, _Refusal):
        raise
    except GrpcException as e:
        raise _Refusal(e.status_code, str(e.details)) from None
    except Exception as e:
        for kinds, code in _KSERVE_STATUS:
            if isinstance(e, kinds):
                raise _Refusal(code, getattr(e, "reason", None) or str(e)) from None
        logger.exception("gRPC call failed")
        raise _Refusal(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE) from None


async def _refuse(
    context: aio.ServicerContext[Any, Any], method: str, code: grpc.StatusCode, message: str
) -> None:
    if code is not grpc.StatusCode.INTERNAL:
        logger.warning(
            "gRPC %s -> %s: %s", method, code.name, message, extra={"client_error": True}
        )
    await context.abort(code, message)


def status_name(context: Any) -> str | None:
    """The status the call ended with (grpc.aio's `code()`); None for none or OK."""
    code = context.code()
    if isinstance(code, int) and not isinstance(code, grpc.StatusCode):
        code = next((c for c in grpc.StatusCode if c.value[0] == code), None)
    if not isinstance(code, grpc.StatusCode) or code is grpc.StatusCode.OK:
        return None
    name: str = code.name
    return name


def cancelled_status(context: Any) -> str:
    """DEADLINE_EXCEEDED when the call's deadline has passed (or is within
    `DEADLINE_SLACK_SECONDS`), else CANCELLED."""
    remaining = context.time_remaining()
    if remaining is not None and remaining <= DEADLINE_SLACK_SECONDS:
        return "DEADLINE_EXCEEDED"
    return "CANCELLED"


def bind_request_id(context: Any, request: Any) -> None:
    """Set REQUEST_ID for this call (see the module docstring)."""
    metadata = dict(context.invocation_metadata() or ())
    request_id = next((metadata[k] for k in REQUEST_ID_KEYS if metadata.get(k)), None)
    if request_id is None:
        request_id = getattr(request, "id", None)
    if request_id and isinstance(request_id, str):
        REQUEST_ID.set(request_id)
