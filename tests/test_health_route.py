"""`GET /health` when the model is not loaded: 503 (the live server's model always is)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from predictor.rest.routes import health


def answer(method: str, ready: bool) -> tuple[int, dict[str, str], bytes]:
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    asyncio.run(health.answer({"type": "http", "method": method}, send, ready))
    start, body = sent
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, body["body"]


def test_not_ready_is_503_with_a_json_status() -> None:
    status, headers, body = answer("GET", ready=False)
    assert status == 503
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["status"] == "unhealthy"


def test_ready_is_200_healthy_and_head_has_no_body() -> None:
    assert answer("GET", ready=True)[::2] == (200, b'{"status":"healthy"}')
    status, headers, body = answer("HEAD", ready=True)
    assert (status, body) == (200, b"")
    assert headers["content-length"] == str(len(b'{"status":"healthy"}'))
