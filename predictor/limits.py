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
app, so it takes no in-flight slot. Deadlines are checked every `SWEEP_SECONDS` for all
connections at once (a timer per request would cost more than the bound is worth), so a
bound fires up to that much late. On SIGTERM uvicorn waits for open requests to finish:
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


# How often the deadlines of all connections are checked: a bound fires up to this much
# late. One periodic check costs less than a timer armed and cancelled per request.
SWEEP_SECONDS: Final = 0.25


class _Deadlines:
    """The connections of one server whose request has a deadline, checked periodically."""

    def __init__(self) -> None:
        self.connections: set[BoundedHttpProtocol] = set()
        self._sweeping = False

    def add(self, connection: BoundedHttpProtocol) -> None:
        self.connections.add(connection)
        if not self._sweeping:
            self._sweeping = True
            connection.loop.call_later(SWEEP_SECONDS, self._sweep, connection.loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for connection in [c for c in self.connections if c.deadline_passed(now)]:
            connection.on_deadline()
        if self.connections:
            loop.call_later(SWEEP_SECONDS, self._sweep, loop)
        else:
            self._sweeping = False


class BoundedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the bounds of the module docstring."""

    def __init__(
        self, *args: Any, limits: ConnectionLimits, deadlines: _Deadlines, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits
        self._deadlines = deadlines
        self._deadline: float | None = None  # loop time by which this phase must be done
        self._reading_headers = True
        self._request_bytes = 0  # received while this request's headers were incomplete
        self._refusal: tuple[int, str, str] | None = None

    # -- connection -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline = self.loop.time() + self._limits.header_timeout_seconds
        self._deadlines.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._deadlines.connections.discard(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._reading_headers:
            if self._deadline is None:  # the first byte of a later request on this connection
                self._deadline = self.loop.time() + self._limits.header_timeout_seconds
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

    def on_headers_complete(self) -> None:
        headers = self.headers
        if len(headers) > self._limits.max_headers:
            self._stop(431, "too_many_headers", f"more than {self._limits.max_headers} headers")
        # Headers are at most the bytes received so far: only a request that received more
        # than the bound (headers and the start of a body, in one chunk) needs counting.
        if self._request_bytes > self._limits.max_header_bytes:
            size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in headers)
            if size > self._limits.max_header_bytes:
                self._stop(431, "header_too_large", self._too_large())
        self._reading_headers = False
        self._deadline = self.loop.time() + self._limits.body_timeout_seconds
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._deadline = None
        self._reading_headers = True
        self._request_bytes = 0
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
        self._deadline = None
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

    def deadline_passed(self, now: float) -> bool:
        return self._deadline is not None and now >= self._deadline

    def on_deadline(self) -> None:
        """The current phase (headers, or body) took longer than its bound."""
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._reading_headers:
            if self._request_bytes == 0:  # nothing sent at all: no request to answer
                HTTP_REFUSED.labels("idle").inc()
                self.transport.close()
                return
            seconds = self._limits.header_timeout_seconds
            message = f"request headers not received within {seconds:g} s"
            self._refuse(408, "header_timeout", message)
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
    return partial(BoundedHttpProtocol, limits=limits, deadlines=_Deadlines())
