"""`GET /health`: the original service's health check, kept for its clients and load tests.

200 `{"status": "healthy"}` while the model is loaded and ready, 503 otherwise. Answered
in front of kserve's stack (`predictor.asgi`): the original's load test calls it on every
iteration, as often as `/predict`.
"""

from __future__ import annotations

from typing import Final

import orjson
from starlette.types import Scope, Send

PATH: Final = "/health"
_HEALTHY: Final = orjson.dumps({"status": "healthy"})
_UNHEALTHY: Final = orjson.dumps({"status": "unhealthy", "error": "the model is not loaded"})
_NOT_ALLOWED: Final = orjson.dumps({"error": "use GET"})


async def answer(scope: Scope, send: Send, ready: bool) -> None:
    if scope["method"] not in ("GET", "HEAD"):
        status, body, extra = 405, _NOT_ALLOWED, [(b"allow", b"GET, HEAD")]
    else:
        status, body, extra = (200, _HEALTHY, []) if ready else (503, _UNHEALTHY, [])
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
