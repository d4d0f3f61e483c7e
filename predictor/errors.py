"""One place that maps errors to answers: every error is JSON `{"error": ...}`.

kserve's REST handlers log every client error at ERROR with a full traceback (kilobytes
per bad request), and FastAPI's router answers 404/405 as `{"detail": ...}`. Here:

- client errors (400 invalid input, 403 refused, 404 unknown model or path, 405 method,
  422, 501 not implemented) answer `{"error": ...}` and log one short WARNING line without
  a traceback, rate-limited by predictor.logs;
- 503 model not ready logs one WARNING line;
- server errors (500) keep kserve's handlers: ERROR with the traceback.

The gRPC side goes through kserve's interceptor, whose log lines predictor.logs shortens
and rate-limits the same way (by the exception types in `CLIENT_ERRORS`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from http import HTTPStatus
from typing import Any, Final

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kserve.errors import (
    InferenceError,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    ServerNotLive,
    ServerNotReady,
    UnsupportedProtocol,
    generic_exception_handler,
    inference_error_handler,
    server_not_live_handler,
    server_not_ready_handler,
)
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from predictor.logs import log_client_error
from predictor.upstream.kserve_repository import RepositoryDisabled

logger: Final = logging.getLogger("kserve.predictor.errors")

Handler = Callable[[Request, Any], Coroutine[Any, Any, Response]]

CLIENT_ERRORS: Final[tuple[type[BaseException], ...]] = (
    InvalidInput,
    ModelNotFound,
    NotImplementedError,
    UnsupportedProtocol,
    RepositoryDisabled,
    # A client that hangs up while a handler reads its body (kserve's `:explain`):
    # uvicorn logs it as "Exception in ASGI application" with the traceback.
    ClientDisconnect,
)
"""Exceptions that are the client's doing: logged short, never with a traceback."""

_STATUS: Final[dict[type[Exception], int]] = {
    InvalidInput: HTTPStatus.BAD_REQUEST,
    ModelNotFound: HTTPStatus.NOT_FOUND,
    NotImplementedError: HTTPStatus.NOT_IMPLEMENTED,
    UnsupportedProtocol: HTTPStatus.NOT_IMPLEMENTED,
    RepositoryDisabled: HTTPStatus.FORBIDDEN,
}


def _message(exc: BaseException) -> str:
    if isinstance(exc, RepositoryDisabled):
        return str(exc.details)
    return str(exc) or type(exc).__name__


async def client_error(request: Request, exc: Exception) -> JSONResponse:
    status = next(code for kind, code in _STATUS.items() if isinstance(exc, kind))
    message = _message(exc)
    log_client_error(request.method, request.url.path, status, message)
    return JSONResponse(status_code=status, content={"error": message})


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    """The router's own answers (404 no such path, 405 method) and any HTTPException."""
    assert isinstance(exc, HTTPException)
    message = str(exc.detail)
    log_client_error(request.method, request.url.path, exc.status_code, message)
    return JSONResponse(
        status_code=exc.status_code, content={"error": message}, headers=exc.headers
    )


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    message = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in errors
    )
    log_client_error(request.method, request.url.path, HTTPStatus.UNPROCESSABLE_ENTITY, message)
    return JSONResponse(
        status_code=HTTPStatus.UNPROCESSABLE_ENTITY,
        content={"error": message or "invalid request", "detail": _plain(errors)},
    )


async def model_not_ready(request: Request, exc: Exception) -> JSONResponse:
    logger.warning("%s %s -> 503: %s", request.method, request.url.path, exc)
    return JSONResponse(status_code=HTTPStatus.SERVICE_UNAVAILABLE, content={"error": str(exc)})


def _plain(errors: Any) -> list[dict[str, Any]]:
    """FastAPI's error entries without their `ctx` / `input` (may hold unserializable values)."""
    return [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in errors]


HANDLERS: Final[dict[int | type[Exception], Handler]] = {
    **dict.fromkeys(_STATUS, client_error),
    HTTPException: http_error,
    RequestValidationError: validation_error,
    ModelNotReady: model_not_ready,
    # kserve's own, for the errors that are the server's.
    InferenceError: inference_error_handler,
    ServerNotLive: server_not_live_handler,
    ServerNotReady: server_not_ready_handler,
    Exception: generic_exception_handler,
}
"""Every error's handler, for the app predictor.rest.kserve_app builds."""
