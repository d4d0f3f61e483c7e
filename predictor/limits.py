"""Bounds on what one HTTP connection may cost before its request reaches the application.

uvicorn's httptools protocol puts no bound on the time a client takes to send a request's
headers or its body, nor on the size or number of headers: a client that sends part of a
request and goes silent holds its connection (and, before, an in-flight slot) forever, and
a 64 MB header costs seconds of CPU and hundreds of MB while it is parsed. This protocol is
uvicorn's, with four bounds (`ConnectionLimits`, one flag each):

- the headers must arrive within `header_timeout_seconds` of the connection opening, or of
  the first byte of a later request on it (idle keep-alive time is uvicorn's own
  `--timeout-keep-alive`); else `408` and close (a connection that sent nothing is just
  closed);
- the body must arrive within `body_timeout_seconds` of the headers; else `408` and close;
- the request line and headers may hold at most `max_header_bytes` and `max_headers`
  fields; else `431` and close, as soon as the bound is passed (the rest is never read);
- a request the parser refuses gets `400` as JSON (uvicorn's own is text/plain).

Each refusal is counted in `housing_http_refused_total{reason}`; it never reaches the ASGI
app, so it takes no in-flight slot. On SIGTERM uvicorn waits for open requests to finish:
these bounds are what stop a stalled one from holding the shutdown for the whole grace
period.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import Any, Final

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from predictor.metrics import HTTP_REFUSED
from predictor.settings import ConnectionLimits

logger: Final = logging.getLogger("kserve.predictor.limits")


class _Refused(Exception):
    """Raised from a parser callback to stop parsing; `send_400_response` answers it."""


class BoundedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the bounds of the module docstring."""

    def __init__(self, *args: Any, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits
        self._timer: asyncio.TimerHandle | None = None
        self._reading_headers = True
        self._request_bytes = 0  # received while this request's headers were incomplete
        self._header_bytes = 0
        self._header_count = 0
        self._refusal: tuple[int, str, str] | None = None

    # -- connection -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self._limits.header_timeout_seconds, self._headers_late)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._reading_headers:
            if self._request_bytes == 0 and self._timer is None:
                # The first byte of a later request on a kept-alive connection.
                self._arm(self._limits.header_timeout_seconds, self._headers_late)
            self._request_bytes += len(data)
        super().data_received(data)
        if (
            self._reading_headers
            and self._request_bytes > self._limits.max_header_bytes
            and not self.transport.is_closing()
        ):
            # Still no end of headers: everything received so far is request line and
            # headers, already more than the bound.
            self._refuse(431, "header_too_large", self._too_large())

    # -- parser callbacks -----------------------------------------------------------------

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._header_bytes += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._header_bytes += len(name) + len(value) + 4
        if self._header_count > self._limits.max_headers:
            self._stop(431, "too_many_headers", f"more than {self._limits.max_headers} headers")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._header_bytes > self._limits.max_header_bytes:
            self._stop(431, "header_too_large", self._too_large())
        self._reading_headers = False
        self._arm(self._limits.body_timeout_seconds, self._body_late)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._reading_headers = True
        self._request_bytes = self._header_bytes = self._header_count = 0
        super().on_message_complete()

    # -- answers --------------------------------------------------------------------------

    def send_400_response(self, msg: str) -> None:
        """uvicorn calls this when the parser fails: a bound passed, or a malformed request."""
        if self._refusal is None:
            self._refuse(400, "bad_request", "malformed HTTP request")
        else:
            self._refuse(*self._refusal)

    def _stop(self, status: int, reason: str, message: str) -> None:
        self._refusal = (status, reason, message)
        raise _Refused(message)

    def _refuse(self, status: int, reason: str, message: str) -> None:
        """Answer `status` with a JSON error, then close; count it."""
        self._disarm()
        HTTP_REFUSED.labels(reason).inc()
        logger.warning(
            "%s from %s: %s", status, _peer(self.client), message, extra={"client_error": True}
        )
        if self.transport.is_closing():
            return
        body = orjson.dumps({"error": message})
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()

    def _too_large(self) -> str:
        return f"request line and headers exceed {self._limits.max_header_bytes} bytes"

    # -- deadlines ------------------------------------------------------------------------

    def _arm(self, seconds: float, callback: Any) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _headers_late(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self._request_bytes == 0:  # nothing sent at all: no request to answer
            HTTP_REFUSED.labels("idle").inc()
            self.transport.close()
            return
        seconds = self._limits.header_timeout_seconds
        self._refuse(408, "header_timeout", f"request headers not received within {seconds:g} s")

    def _body_late(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and cycle.response_started:
            # The app answered without waiting for the body: nothing more to say.
            HTTP_REFUSED.labels("body_timeout").inc()
            self.transport.close()
            return
        seconds = self._limits.body_timeout_seconds
        self._refuse(408, "body_timeout", f"request body not received within {seconds:g} s")


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "unknown peer"


def protocol_factory(limits: ConnectionLimits) -> Any:
    """What uvicorn's `Config.http` takes: builds one bounded protocol per connection."""
    return partial(BoundedHttpProtocol, limits=limits)
