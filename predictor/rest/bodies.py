"""Request bodies: the size cap, the content types read as JSON, and large-body offload.

- `read_body` reads the whole body, refusing it (413) as soon as it exceeds the cap,
  whether the client declared its length or streams it chunked.
- `is_json`: what a JSON route reads as JSON.
- `off_loop`: bodies above `--offload_body_bytes` are parsed and checked in a dedicated
  one-thread pool, not on the event loop. A few clients sending 2 MB bodies whose data does
  not match their shape kept the event loop busy for tens of milliseconds per body, and
  everyone else's requests waited behind them. The pool is separate from the default
  executor, so hostile bodies queue among themselves and never delay large model batches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, TypeVar

from starlette.types import Receive, Scope

T = TypeVar("T")

# One thread: parsing holds the GIL, so more threads would not parse more bodies at once,
# only take more of the GIL from the event loop (which then still gets at least half).
_POOL: Final = ThreadPoolExecutor(max_workers=1, thread_name_prefix="large-body")
# What `curl -d` declares unless told otherwise; KServe's own docs send JSON that way.
_CURL_DEFAULT: Final = b"application/x-www-form-urlencoded"
NOT_JSON: Final = "unsupported Content-Type: send application/json (or no Content-Type)"


class BodyTooLarge(Exception):
    """The body exceeds the cap."""


class ClientGone(Exception):
    """The client went away before its whole body arrived."""


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of a (lower-case) header, or None."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def is_json(content_type: bytes | None) -> bool:
    """Whether a body of this declared type is read as JSON.

    No Content-Type is JSON, as FastAPI and kserve read it: k6's `http.post` with a string
    body and tritonclient's all-JSON requests send none. So is curl's `-d` default, which
    no JSON API could mean literally (a body that is no JSON still gets a 400 saying so).
    """
    if content_type is None:
        return True
    media_type = content_type.split(b";", 1)[0].strip().lower()
    return (
        media_type == b"application/json"
        or media_type.endswith(b"+json")
        or media_type == _CURL_DEFAULT
    )


async def read_body(scope: Scope, receive: Receive, max_bytes: int) -> bytes:
    """The whole request body; `BodyTooLarge` as soon as it exceeds `max_bytes`,
    `ClientGone` if the client leaves first."""
    declared = header(scope, b"content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > max_bytes):
        raise BodyTooLarge
    message = await receive()
    if message["type"] == "http.request" and not message.get("more_body", False):
        body: bytes = message.get("body", b"")
        if len(body) > max_bytes:
            raise BodyTooLarge
        return body
    chunks: list[bytes] = []
    size = 0
    while True:
        if message["type"] != "http.request":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
        message = await receive()


async def off_loop(work: Callable[..., T], *args: Any) -> T:
    """`work(*args)` in the large-body pool."""
    return await asyncio.get_running_loop().run_in_executor(_POOL, work, *args)
