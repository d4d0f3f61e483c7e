"""Logging: one JSON object per line, errors only per request, the request id attached.

kserve's, uvicorn's and grpc's loggers are configured here, once, in `main()`. Successful
requests are not logged (uvicorn's access log and kserve's per-request timing lines are
kept at WARNING): at thousands of requests a second they would cost more than the
requests. `/metrics` counts and times every request instead.

Client errors (a bad request is the client's doing, not the server's) are one short
WARNING line each, without a traceback, and at most `client_error_lines_per_minute` of
them: a client sending garbage in a loop cannot flood the logs. Server errors keep
their tracebacks and are never dropped.

Text lines escape control characters (`\\n`, `\\r`, `\\x1b`, ...): a model name, datatype or
path that a client chose is quoted in the message, and must not start a line of its own.
JSON lines are escaped by JSON itself.
"""

from __future__ import annotations

import contextvars
import json
import logging
import logging.config
import threading
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

REQUEST_ID: Final[contextvars.ContextVar[str | None]] = contextvars.ContextVar(
    "request_id", default=None
)
"""The caller's `x-request-id` (or B3 trace id), set per request by the ASGI layer."""

LOG_FORMATS: Final = ("json", "text")
_TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


class RequestIdFilter(logging.Filter):
    """Copies the current request id onto every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class ClientErrorFilter(logging.Filter):
    """Shortens and rate-limits client-error records (see the module docstring).

    A record is a client error when it carries `client_error=True` (our own lines), or an
    exception of one of `client_errors` (grpcio logs a failed send, the client gone, at
    ERROR with the traceback). A token bucket of `per_minute` lines, refilled
    continuously; the line that follows a dropped run says how many were dropped.
    """

    def __init__(
        self,
        client_errors: tuple[type[BaseException], ...] = (),
        per_minute: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._kinds = client_errors
        self._capacity = per_minute
        self._rate = per_minute / 60.0
        self._clock = clock
        self._tokens = per_minute
        self._stamp = clock()
        self._dropped = 0
        self._lock = threading.Lock()  # gRPC handlers log from worker threads too

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not (getattr(record, "client_error", False) or isinstance(exc, self._kinds)):
            return True
        with self._lock:
            now = self._clock()
            self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now
            if self._tokens < 1:
                self._dropped += 1
                return False
            self._tokens -= 1
            dropped, self._dropped = self._dropped, 0
        if exc is not None:
            record.msg, record.args = "%s (%s: %s)", (record.getMessage(), type(exc).__name__, exc)
            record.exc_info, record.exc_text = None, None
        if record.levelno > logging.WARNING:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        if dropped:
            record.msg, record.args = (
                "%s [%d similar client-error lines dropped]",
                (
                    record.getMessage(),
                    dropped,
                ),
            )
        return True


# Every C0 control character and DEL, as Python would write it in a string literal.
_CONTROL_ESCAPES: Final = {code: repr(chr(code))[1:-1] for code in (*range(0x20), 0x7F)}


class TextFormatter(logging.Formatter):
    """The text format, with control characters escaped (a traceback keeps its lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return super().formatMessage(record).translate(_CONTROL_ESCAPES)


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message", "request_id"?, "exception"?}` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def logging_config(
    log_format: str,
    level: str,
    client_errors: tuple[type[BaseException], ...] = (),
    client_error_lines_per_minute: float = 60.0,
) -> dict[str, Any]:
    """A dictConfig for kserve's, uvicorn's and our loggers, all to stderr."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {LOG_FORMATS}, got {log_format!r}")
    formatter = (
        {"()": JsonFormatter}
        if log_format == "json"
        else {"()": TextFormatter, "format": _TEXT_FORMAT, "datefmt": "%Y-%m-%dT%H:%M:%S"}
    )
    handler = {
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
        "formatter": "default",
        "filters": ["request_id", "client_errors"],
    }

    def logger(logger_level: str) -> dict[str, Any]:
        return {"handlers": ["default"], "level": logger_level, "propagate": False}

    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "request_id": {"()": RequestIdFilter},
            "client_errors": {
                "()": ClientErrorFilter,
                "client_errors": client_errors,
                "per_minute": client_error_lines_per_minute,
            },
        },
        "formatters": {"default": formatter},
        "handlers": {"default": handler},
        "loggers": {
            "kserve": logger(level),
            "kserve.trace": logger("WARNING"),
            "uvicorn": logger(level),
            "uvicorn.error": logger(level),
            "uvicorn.access": logger("WARNING"),
            "predictor": logger(level),
            "py.warnings": logger("WARNING"),
        },
        "root": {"handlers": ["default"], "level": "WARNING"},
    }


def configure(
    log_format: str,
    level: str,
    client_errors: tuple[type[BaseException], ...] = (),
    client_error_lines_per_minute: float = 60.0,
) -> None:
    logging.config.dictConfig(
        logging_config(log_format, level, client_errors, client_error_lines_per_minute)
    )
    logging.captureWarnings(True)
    # kserve's own endpoints use FastAPI's ORJSONResponse, which FastAPI now deprecates:
    # nothing an operator of this server can act on.
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")


_client_errors: Final = logging.getLogger("kserve.predictor.errors")


def log_client_error(method: str, path: str, status: int, message: str) -> None:
    """One short line; `client_error` lets predictor.logs rate-limit it."""
    _client_errors.warning(
        "%s %s -> %d: %s", method, path, status, message, extra={"client_error": True}
    )
