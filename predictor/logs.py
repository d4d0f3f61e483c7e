"""Logging: one JSON object per line, errors only per request, the request id attached.

kserve's and uvicorn's loggers are configured here before kserve's ModelServer would
configure them itself. Successful requests are not logged (uvicorn's access log and kserve's
per-request timing lines are kept at WARNING): at thousands of requests a second they would
cost more than the requests. `/metrics` counts and times every request instead.
"""

from __future__ import annotations

import contextvars
import json
import logging
import logging.config
import warnings
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


def logging_config(log_format: str, level: str) -> dict[str, Any]:
    """A dictConfig for kserve's, uvicorn's and our loggers, all to stderr."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {LOG_FORMATS}, got {log_format!r}")
    formatter = (
        {"()": JsonFormatter}
        if log_format == "json"
        else {"format": _TEXT_FORMAT, "datefmt": "%Y-%m-%dT%H:%M:%S"}
    )
    handler = {
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
        "formatter": "default",
        "filters": ["request_id"],
    }

    def logger(logger_level: str) -> dict[str, Any]:
        return {"handlers": ["default"], "level": logger_level, "propagate": False}

    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
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


def configure(log_format: str, level: str) -> None:
    logging.config.dictConfig(logging_config(log_format, level))
    logging.captureWarnings(True)
    # kserve's own endpoints use FastAPI's ORJSONResponse, which FastAPI now deprecates:
    # nothing an operator of this server can act on.
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")
