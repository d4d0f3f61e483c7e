"""uvicorn's httptools protocol, subclassed: bounds on what one HTTP connection may cost.

uvicorn's protocol puts no bound on the time a client takes to send a request's headers or
its body, nor on the size or number of headers: a client that sends part of a request and
goes silent holds its connection (and, before, an in-flight slot) forever, and a 64 MB
header costs seconds of CPU and hundreds of MB while it is parsed. Nor does it bound the
write side: a client that pipelines requests and never reads their answers holds the
request whose answer waits to be written (and its in-flight slot) forever, and every
unsent answer stays in memory. This protocol is uvicorn's, with these bounds
(`ConnectionLimits`, one flag each). On the read side:

- the headers must arrive within `header_timeout_seconds` of the connection opening, or of
  the first byte of a later request on it (idle keep-alive time is uvicorn's own
  `--timeout-keep-alive`); else `408` and close (a connection that sent nothing is just
  closed);
- the body must arrive within `body_timeout_seconds` of the headers; else `408` and close;
- the request line and headers may hold at most `max_header_bytes` and `max_headers`
  fields; else `431` and close, as soon as the bound is passed (the rest is never read);
- a request the parser refuses gets `400` as JSON (uvicorn's own is text/plain); so does
  an HTTP/1.1 request without a `Host` header, or any request with two (RFC 9112 §3.2),
  and a request line of another HTTP version than 1.0 or 1.1 gets `505`;
- a request asking to switch to a protocol this server does not speak (`Upgrade: h2c`,
  `foo`, ...) is served as a plain request, the `Upgrade` ignored (RFC 9110 §7.8 lets a
  server ignore it; Java's `HttpClient` and `curl --http2` ask for h2c on every request,
  POSTs included). The parser completes an upgrade request at the end of its headers and
  would parse its body as the next request, which is how a request is smuggled past
  whatever checked the first one; so a `Content-Length` body is taken here, byte for byte,
  as the request's body, and parsing resumes after it. An upgrade with a chunked body
  gets `400` and close.

Each refusal is counted in `housing_http_refused_total{reason}`; it never reaches the ASGI
app, so it takes no in-flight slot. On the write side (counted in
`housing_http_dropped_total{reason}`, the connection aborted, its unsent bytes freed):

- bytes the client has not taken must be taken within `write_timeout_seconds` (the
  transport stays paused for writing, above its high-water mark, no longer than that);
- a connection holding more than `max_unsent_bytes_per_connection` unsent bytes when
  another answer is ready to be written is dropped at once (`unsent_bytes`: only a client
  that pipelines without reading has another answer ready before it took the last);
- the unsent bytes of all paused connections together stay under `max_unsent_bytes`:
  beyond it the connections paused longest are dropped first (`unsent_total`).

A dropped connection's request, if one waits to write, sees the disconnect at once and
gives back its in-flight slot. Deadlines are checked every `SWEEP_SECONDS` for all
connections at once (a timer per request would cost more than the bound is worth), so a
bound fires up to that much late. On SIGTERM uvicorn waits for open requests to finish
and for every connection to close: these bounds are what stop a stalled client, on
either side, from holding the shutdown for the whole grace period.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from functools import partial
from typing import Any, Final

import httptools
import orjson
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from predictor.metrics import HTTP_DROPPED, HTTP_REFUSED
from predictor.settings import ConnectionLimits

logger: Final = logging.getLogger("kserve.predictor.limits")


class _Refused(Exception):
    """Raised from a parser callback to stop parsing; `send_400_response` answers it."""


# The kernel's send buffer of each connection. Linux grows it up to net.ipv4.tcp_wmem's
# maximum (4 MiB by default): answers a client does not read would sit there, outside the
# bounds below (and still counted against the container's memory). Fixed at this size
# (the kernel doubles it), more than a client in the cluster needs to be answered at
# full speed, the rest waits in the transport, where the bounds see it.
KERNEL_SEND_BUFFER_BYTES: Final = 128 * 1024

# The HTTP versions served; httptools also reads 0.9 and 2.0 request lines, which would be
# answered as HTTP/1.1 (RFC 9110 §6.2: 505 for a major version not served).
_VERSIONS: Final = frozenset({"1.0", "1.1"})

# How often the deadlines of all connections are checked: a bound fires up to this much
# late. One periodic check costs less than a timer armed and cancelled per request.
SWEEP_SECONDS: Final = 0.25


class _Deadlines:
    """The connections of one server with a deadline, checked periodically."""

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
        for connection in list(self.connections):
            connection.on_sweep(now)
        if self.connections:
            loop.call_later(SWEEP_SECONDS, self._sweep, loop)
        else:
            self._sweeping = False


class _Unsent:
    """Bytes of answers that paused connections hold and their clients have not taken.

    Kept per connection in the order the connections paused, so that the oldest stall is
    the first one dropped when the total passes the bound. A connection below its
    transport's high-water mark (64 KiB) is not counted.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self._sizes: dict[BoundedHttpProtocol, int] = {}

    def record(self, connection: BoundedHttpProtocol, size: int) -> None:
        self.total += size - self._sizes.get(connection, 0)
        self._sizes[connection] = size

    def forget(self, connection: BoundedHttpProtocol) -> None:
        self.total -= self._sizes.pop(connection, 0)

    def oldest(self) -> BoundedHttpProtocol:
        return next(iter(self._sizes))


class _Shared:
    """What all connections of one server share: their deadlines and unsent bytes."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.deadlines = _Deadlines()
        self.unsent = _Unsent(limits.max_unsent_bytes)


class _BoundedFlow(FlowControl):
    """uvicorn's flow control, which tells the connection when an answer must wait."""

    def __init__(self, transport: asyncio.Transport, connection: BoundedHttpProtocol) -> None:
        super().__init__(transport)
        self._connection = connection

    async def drain(self) -> None:
        # uvicorn awaits this before writing any part of an answer while paused.
        if self._connection.may_wait_to_write():
            await super().drain()


class BoundedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the bounds of the module docstring."""

    def __init__(
        self, *args: Any, limits: ConnectionLimits, shared: _Shared, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits
        self._shared = shared
        self._deadline: float | None = None  # loop time by which this read phase must be done
        self._write_deadline: float | None = None  # by which the client must take its bytes
        self._dropped = False
        self._reading_headers = True
        self._request_bytes = 0  # received while this request's headers were incomplete
        self._refusal: tuple[int, str, str] | None = None
        # Body bytes of an ignored-upgrade request still to pass on (see `_take_body`).
        self._upgrade_body: int | None = None

    # -- connection -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, KERNEL_SEND_BUFFER_BYTES)
        self.flow = _BoundedFlow(transport, self)
        self._deadline = self.loop.time() + self._limits.header_timeout_seconds
        self._shared.deadlines.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._shared.deadlines.connections.discard(self)
        self._shared.unsent.forget(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self._reading_headers:
            if self._deadline is None:  # the first byte of a later request on this connection
                self._deadline = self.loop.time() + self._limits.header_timeout_seconds
            self._request_bytes += len(data)
        self._feed(data)
        if (
            self._reading_headers
            and self._request_bytes > self._limits.max_header_bytes
            and not self.transport.is_closing()
        ):
            # Still no end of headers: everything received so far is request line and
            # headers, already more than the bound.
            self._refuse(431, "header_too_large", self._too_large())

    def _feed(self, data: bytes) -> None:
        """uvicorn's `data_received`, except for an upgrade it does not handle: parsing
        goes on after it, past the request's body (see `on_headers_complete`)."""
        remaining = self._upgrade_body
        if remaining is not None:
            self._take_body(data, remaining)
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.send_400_response("Invalid HTTP request received.")
        except httptools.HttpParserUpgrade as upgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            elif not self.transport.is_closing():
                self._feed(data[upgrade.args[0] :])

    def _take_body(self, data: bytes, remaining: int) -> None:
        """The next bytes of an ignored-upgrade request's `Content-Length` body (`remaining`
        bytes of it to come), for the request; once it is whole, the request completes and
        what follows is parsed."""
        body, rest = data[:remaining], data[remaining:]
        if body:
            self.on_body(body)
        if remaining > len(body):
            self._upgrade_body = remaining - len(body)
            return
        self._upgrade_body = None
        self.on_message_complete()
        if rest and not self.transport.is_closing():
            self._feed(rest)

    def shutdown(self) -> None:
        """uvicorn's, and answers still unsent at shutdown get the write bound too."""
        super().shutdown()
        if self._write_deadline is None and self.transport.get_write_buffer_size():
            self._start_write_deadline()

    # -- write side -----------------------------------------------------------------------

    def pause_writing(self) -> None:
        """The transport holds more than its high-water mark: the client is behind."""
        super().pause_writing()
        self._start_write_deadline()
        unsent = self._shared.unsent
        unsent.record(self, self.transport.get_write_buffer_size())
        while unsent.total > unsent.limit:
            unsent.oldest().drop(
                "unsent_total", f"unsent answers of all clients exceed {unsent.limit} bytes"
            )

    def resume_writing(self) -> None:
        super().resume_writing()
        self._write_deadline = None
        self._shared.unsent.forget(self)

    def may_wait_to_write(self) -> bool:
        """Another answer is ready while this client still has not taken the last ones."""
        bound = self._limits.max_unsent_bytes_per_connection
        if self._dropped:
            return False
        if self.transport.get_write_buffer_size() <= bound:
            return True
        self.drop("unsent_bytes", f"more than {bound} unsent bytes and another answer ready")
        return False

    def _start_write_deadline(self) -> None:
        self._write_deadline = self.loop.time() + self._limits.write_timeout_seconds
        self._shared.deadlines.add(self)

    def drop(self, reason: str, message: str) -> None:
        """Abort the connection: its unsent bytes are freed, a waiting answer returns."""
        self._write_deadline = None
        self._shared.unsent.forget(self)
        if self._dropped:
            return
        self._dropped = True
        HTTP_DROPPED.labels(reason).inc()
        logger.warning("dropped %s: %s", _peer(self.client), message, extra={"client_error": True})
        self.transport.abort()
        # What uvicorn's `connection_lost` will do, now: the request that was about to
        # write sees the disconnect at once, writes nothing more and frees its slot.
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True

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
        version = self.parser.get_http_version()
        if version not in _VERSIONS:
            self._stop(505, "http_version", f"HTTP/{version} is not served here: use HTTP/1.1")
        hosts = sum(name == b"host" for name, _ in headers)
        if hosts > 1 or (hosts == 0 and version == "1.1"):
            self._stop(400, "host", f"an HTTP/{version} request needs exactly one Host header")
        if self.parser.should_upgrade() and not self._should_upgrade():
            if any(name == b"transfer-encoding" for name, _ in headers):
                self._stop(400, "unsupported_upgrade", "unsupported Upgrade on a chunked request")
            length = _content_length(headers)
            if length:
                self._upgrade_body = length  # the parser will not read it: `_take_body` will
        self._reading_headers = False
        self._deadline = self.loop.time() + self._limits.body_timeout_seconds
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        if self._upgrade_body is not None:
            return  # the parser's, at the end of an upgrade's headers: the body follows
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

    def on_sweep(self, now: float) -> None:
        """Fire whichever deadline passed; keep counting unsent bytes while paused."""
        if self._write_deadline is not None:
            if now >= self._write_deadline:
                seconds = self._limits.write_timeout_seconds
                self.drop("write_timeout", f"answer not taken within {seconds:g} s")
                return
            if self.flow.write_paused:  # the buffer only shrinks while paused
                self._shared.unsent.record(self, self.transport.get_write_buffer_size())
        if self._deadline is not None and now >= self._deadline:
            self.on_deadline()

    def on_deadline(self) -> None:
        """The current read phase (headers, or body) took longer than its bound."""
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


def _content_length(headers: list[tuple[bytes, bytes]]) -> int:
    """The request's `Content-Length` (0 without one; the parser refused a malformed one)."""
    for name, value in headers:
        if name == b"content-length":
            return int(value)
    return 0


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "unknown peer"


def protocol_factory(limits: ConnectionLimits) -> Any:
    """What uvicorn's `Config.http` takes: builds one bounded protocol per connection."""
    return partial(BoundedHttpProtocol, limits=limits, shared=_Shared(limits))
