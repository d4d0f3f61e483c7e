"""Answers: a status, a body encoded once, and its headers, sent in two ASGI messages.

Every answer carries `Content-Length` (binary V2 answers too), so none is ever sent
chunked: HTTP/1.0 clients, which cannot read chunked answers, get whole ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from starlette.types import Send

JSON: Final = b"application/json"
Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    headers: Headers = field(default_factory=list)
    """Beyond Content-Type and Content-Length."""
    content_type: bytes = JSON
    error: str | None = None
    """The error message of an error answer, for the log line."""
    rows: int = 0
    """Rows answered (for the response memo's hit count)."""


def json_answer(status: int, content: Any, headers: Headers | None = None) -> Answer:
    return Answer(status, orjson.dumps(content), headers or [])


def error_answer(status: int, message: str, headers: Headers | None = None) -> Answer:
    """`{"error": message}`: every error of this server's own routes."""
    return Answer(status, orjson.dumps({"error": message}), headers or [], error=message)


async def send_answer(send: Send, answer: Answer, head: bool = False) -> None:
    """Send `answer`; for HEAD, its headers (Content-Length included) without the body."""
    body = answer.body
    headers = [
        (b"content-type", answer.content_type),
        (b"content-length", str(len(body)).encode()),
        *answer.headers,
    ]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})
