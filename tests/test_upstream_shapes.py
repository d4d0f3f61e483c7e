"""What predictor/upstream/uvicorn_protocol.py and predictor/grpc/server.py rely on in uvicorn,
httptools and kserve's V2 protos, one test per behaviour: each drives the real upstream code
(uvicorn's `HttpToolsProtocol` and `RequestResponseCycle` on a real loopback TCP connection,
httptools' parser) and fails, naming what changed, when an upgrade changes that behaviour."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httptools
import pytest
import uvicorn
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from predictor.grpc.server import SERVICE
from predictor.settings import ConnectionLimits
from predictor.upstream.uvicorn_protocol import BoundedHttpProtocol, _BoundedFlow, protocol_factory

App = Callable[[Any, Any, Any], Awaitable[None]]
LIMITS = ConnectionLimits(
    header_timeout_seconds=60,
    body_timeout_seconds=60,
    max_header_bytes=64 * 1024,
    max_headers=100,
    write_timeout_seconds=60,
    max_unsent_bytes_per_connection=256 * 1024 * 1024,
    max_unsent_bytes=1024 * 1024 * 1024,
)
WAIT = 20.0  # seconds: only "it happened at all", never a measure
CHUNK = 256 * 1024
CHUNKS = 16  # 4 MiB: far more than both kernel buffers of a loopback connection hold
GET = b"GET /%s HTTP/1.1\r\nHost: t\r\n\r\n"


@contextmanager
def loopback() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A real TCP connection on 127.0.0.1: (server side, client side), small buffers."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect(listener.getsockname())
        server, _ = listener.accept()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    client.setblocking(False)
    with client, server:
        yield server, client


async def connect(
    factory: Callable[..., HttpToolsProtocol], app: App, server: socket.socket
) -> tuple[asyncio.Transport, Any]:
    """`factory`'s protocol serving `app` on `server`, as uvicorn's server makes it."""
    config = uvicorn.Config(app, lifespan="off", log_config=None)
    config.load()
    state = ServerState()
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.connect_accepted_socket(
        lambda: factory(config=config, server_state=state, app_state={}), server
    )
    return transport, protocol  # type: ignore[return-value]


async def read_all(client: socket.socket, size: int) -> bytes:
    loop = asyncio.get_running_loop()
    received = bytearray()
    while len(received) < size:
        try:
            chunk = await asyncio.wait_for(loop.sock_recv(client, 1 << 20), WAIT)
        except ConnectionResetError:  # aborted
            break
        if not chunk:
            break
        received += chunk
    return bytes(received)


async def eventually(condition: Callable[[], bool], what: str) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.005)

    try:
        await asyncio.wait_for(poll(), WAIT)
    except TimeoutError:
        pytest.fail(f"never happened: {what}")


def run(coroutine: Awaitable[None]) -> None:
    async def main() -> None:
        await coroutine

    asyncio.run(main())


async def answer_ok(scope: Any, receive: Any, send: Any) -> None:
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.mark.parametrize(
    "name",
    [
        "connection_made",
        "connection_lost",
        "data_received",
        "on_headers_complete",
        "on_message_complete",
        "send_400_response",
        "pause_writing",
        "resume_writing",
        "shutdown",
        "_should_upgrade",
        "handle_websocket_upgrade",
        "_unset_keepalive_if_required",
        "on_body",
    ],
)
def test_uvicorn_protocol_has_the_methods_we_override_or_call(name: str) -> None:
    assert callable(getattr(HttpToolsProtocol, name, None)), name


# -- flow control ---------------------------------------------------------------------------


def test_uvicorn_makes_its_flow_control_in_connection_made_and_hands_it_to_each_request() -> None:
    """BoundedHttpProtocol replaces `self.flow` right after uvicorn's `connection_made`:
    uvicorn must make it there, bound to the transport, and give that same object to each
    request's cycle (where `send` awaits its `drain`)."""

    async def probe() -> None:
        for factory in (HttpToolsProtocol, protocol_factory(LIMITS)):
            with loopback() as (server, _):
                transport, protocol = await connect(factory, answer_ok, server)
                flow = protocol.flow
                assert isinstance(flow, FlowControl), f"connection_made made no FlowControl: {flow}"
                flow.pause_reading()
                assert not transport.is_reading(), "the flow control is not the transport's"
                flow.resume_reading()
                assert transport.is_reading(), "the flow control is not the transport's"
                protocol.data_received(GET % b"a")
                assert protocol.cycle.flow is flow, "a request's cycle got another flow control"
                if isinstance(protocol, BoundedHttpProtocol):
                    assert isinstance(flow, _BoundedFlow), "BoundedHttpProtocol's flow replaced"
                transport.close()
                await asyncio.sleep(0)

    run(probe())


def streaming_app(sent: list[int]) -> App:
    """Answers CHUNKS chunks of CHUNK bytes, counting the sends that returned."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        length = str(CHUNK * CHUNKS).encode()
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", length)]}
        )
        for i in range(CHUNKS):
            more = i < CHUNKS - 1
            await send({"type": "http.response.body", "body": b"x" * CHUNK, "more_body": more})
            sent.append(i)

    return app


def test_uvicorn_awaits_flow_drain_before_writing_while_paused() -> None:
    """The per-connection bound is checked in `drain`: uvicorn's `send` must await it,
    and write nothing until it returns, while the transport is paused for writing (the
    client behind), as a real connection whose client does not read makes it."""
    drains: list[tuple[bool, int]] = []  # (write paused, sends returned) as drain began
    resumed: list[int] = []  # sends returned as each drain ended
    sent: list[int] = []

    class RecordingFlow(FlowControl):
        async def drain(self) -> None:
            drains.append((self.write_paused, len(sent)))
            await super().drain()
            resumed.append(len(sent))

    class Recording(HttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.flow = RecordingFlow(transport)  # as BoundedHttpProtocol does

    async def probe() -> None:
        with loopback() as (server, client):
            transport, protocol = await connect(Recording, streaming_app(sent), server)
            protocol.data_received(GET % b"a")
            await eventually(lambda: bool(drains), "send awaited flow.drain (client not reading)")
            assert drains[0][0], "send awaited drain while not paused for writing"
            waiting_at, unsent = len(sent), transport.get_write_buffer_size()
            await asyncio.sleep(0.05)
            assert len(sent) == waiting_at, "send returned while drain still waited"
            # The kernel may take a little more meanwhile; a write would add a whole chunk.
            assert transport.get_write_buffer_size() <= unsent, "send wrote while drain waited"
            received = await read_all(client, CHUNK * CHUNKS)
            assert received.endswith(b"x" * CHUNK) and len(sent) == CHUNKS, "answer incomplete"
            assert resumed and resumed[0] == drains[0][1], "send wrote before drain returned"
            transport.close()

    run(probe())


def test_bounded_protocol_consults_its_bound_in_the_drain_uvicorn_awaits() -> None:
    """The same, end to end through BoundedHttpProtocol: a paused write consults
    `may_wait_to_write`; with the bound passed, the connection is dropped and the waiting
    `send` returns at once, writing nothing more."""
    consulted: list[int] = []

    class Recording(BoundedHttpProtocol):
        def may_wait_to_write(self) -> bool:
            consulted.append(self.transport.get_write_buffer_size())
            return super().may_wait_to_write()

    async def probe(limits: ConnectionLimits, dropped: bool) -> None:
        sent: list[int] = []
        factory = protocol_factory(limits)
        with loopback() as (server, client):
            transport, protocol = await connect(
                lambda **kw: Recording(**kw, **factory.keywords), streaming_app(sent), server
            )
            protocol.data_received(GET % b"a")
            await eventually(lambda: bool(consulted), "send awaited drain, which asked the bound")
            if dropped:
                await eventually(lambda: protocol.cycle.disconnected, "the cycle saw the drop")
                assert transport.is_closing(), "the connection was not aborted"
                await eventually(lambda: len(sent) == CHUNKS, "the waiting send returned")
                received = await read_all(client, CHUNK * CHUNKS)
                assert len(received) < CHUNK * CHUNKS, "a dropped connection kept writing"
            else:
                await read_all(client, CHUNK * CHUNKS)
                assert len(sent) == CHUNKS, "answer incomplete"
                transport.close()

    run(probe(LIMITS, dropped=False))
    consulted.clear()
    # Paused means more than the transport's high-water mark (64 KiB) unsent: past this bound.
    tight = ConnectionLimits(**{**vars(LIMITS), "max_unsent_bytes_per_connection": 64 * 1024})
    run(probe(tight, dropped=True))


# -- reading --------------------------------------------------------------------------------


class Traced(HttpToolsProtocol):
    """uvicorn's protocol, recording what parsing did."""

    trace: list[object]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.trace = []
        super().connection_made(transport)

    def on_headers_complete(self) -> None:
        self.trace.append(("request", self.url))
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        self.trace.append("400")
        super().send_400_response(msg)

    def handle_websocket_upgrade(self) -> None:
        self.trace.append("websocket")

    def _unset_keepalive_if_required(self) -> None:
        self.trace.append("keep-alive timer off")
        super()._unset_keepalive_if_required()


class Fed(Traced):
    """The same, with `data_received` as BoundedHttpProtocol's: `_feed` in uvicorn's place."""

    _feed = BoundedHttpProtocol._feed
    _take_body = BoundedHttpProtocol._take_body
    _upgrade_body: int | None = None  # set by BoundedHttpProtocol.on_headers_complete only

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        self._feed(data)


UPGRADE = b"GET /a HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n"
FEEDS = {
    "pipelined": [GET % b"a" + GET % b"b"],
    "split": [b"GET /a HTTP/1.1\r\nHo", b"st: t\r\n\r\n"],
    "malformed": [b"\x00 not http\r\n\r\n"],
    "websocket": [UPGRADE % b"websocket"],
}


async def traced(factory: type[Traced], feeds: list[bytes]) -> list[object]:
    with loopback() as (server, _):
        transport, protocol = await connect(factory, answer_ok, server)
        for data in feeds:
            protocol.data_received(data)
        transport.close()
        await asyncio.sleep(0)
        return protocol.trace  # type: ignore[no-any-return]


@pytest.mark.parametrize("case", sorted(FEEDS))
def test_uvicorn_data_received_is_what_feed_does(case: str) -> None:
    """`_feed` is uvicorn's `data_received` (feed the parser, a malformed request to
    `send_400_response`, a WebSocket upgrade to `handle_websocket_upgrade`): both parse
    the same requests and make the same calls."""

    async def probe() -> None:
        uvicorns, ours = await traced(Traced, FEEDS[case]), await traced(Fed, FEEDS[case])
        assert ours == uvicorns, f"uvicorn's data_received now does otherwise: {uvicorns}"

    run(probe())


def test_uvicorn_stops_parsing_after_an_unsupported_upgrade_which_feed_goes_on_from() -> None:
    """What `_feed` changes: after a request with `Upgrade: h2c` uvicorn parses nothing more
    on the connection; `_feed` parses what follows as the next request."""

    async def probe() -> None:
        feed = [UPGRADE % b"h2c" + GET % b"b"]
        uvicorns, ours = await traced(Traced, feed), await traced(Fed, feed)
        requests = [event for event in uvicorns if isinstance(event, tuple)]
        assert requests == [("request", b"/a")], f"uvicorn parses past an upgrade now: {uvicorns}"
        assert [e for e in ours if isinstance(e, tuple)] == [("request", b"/a"), ("request", b"/b")]

    run(probe())


class _Callbacks:
    """What httptools calls back, recording whether the request asks for an upgrade."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.upgrade: list[bool] = []
        self.parser: httptools.HttpRequestParser | None = None

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        self.upgrade.append(self.parser.should_upgrade())
        if self.refuse:
            raise RuntimeError("refused")


def test_httptools_upgrade_error_carries_the_offset_of_what_follows() -> None:
    """`_feed` goes on from that offset; `on_headers_complete` reads `should_upgrade()`."""
    callbacks = _Callbacks()
    parser = callbacks.parser = httptools.HttpRequestParser(callbacks)
    request = UPGRADE % b"h2c"
    with pytest.raises(httptools.HttpParserUpgrade) as raised:
        parser.feed_data(request + b"NEXT")
    assert raised.value.args[0] == len(request)
    assert callbacks.upgrade == [True], "should_upgrade() is not known in on_headers_complete"


class _BodyCallbacks:
    """What httptools calls back for an upgrade request with a body, in order."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def on_headers_complete(self) -> None:
        self.calls.append("headers")

    def on_body(self, body: bytes) -> None:
        self.calls.append("body")

    def on_message_complete(self) -> None:
        self.calls.append("complete")


def test_httptools_completes_an_upgrade_at_its_headers_and_leaves_its_body_unread() -> None:
    """What `_take_body` relies on: for a request with `Upgrade` and a `Content-Length` body
    the parser completes the message at the end of the headers, never calls `on_body`, and
    raises the upgrade with the offset where the body starts (so `_take_body` takes the
    body from there, once, and the parser never reads it as the next request)."""
    callbacks = _BodyCallbacks()
    parser = httptools.HttpRequestParser(callbacks)
    body = b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"
    head = (
        b"POST /a HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    with pytest.raises(httptools.HttpParserUpgrade) as raised:
        parser.feed_data(head + body)
    assert raised.value.args[0] == len(head), "the upgrade's offset is not the body's start"
    assert callbacks.calls == ["headers", "complete"], (
        f"httptools reads an upgrade's body now ({callbacks.calls}): _take_body would take it "
        "a second time"
    )


def test_httptools_turns_an_exception_in_a_callback_into_a_parser_error() -> None:
    """A bound passed in `on_headers_complete` raises there; httptools must surface it from
    `feed_data` as the `HttpParserError` that `_feed` answers with `send_400_response`."""
    callbacks = _Callbacks(refuse=True)
    parser = callbacks.parser = httptools.HttpRequestParser(callbacks)
    with pytest.raises(httptools.HttpParserError):
        parser.feed_data(GET % b"a" + GET % b"b")
    assert callbacks.upgrade == [False], "httptools parsed on after a callback raised"


# -- disconnects ----------------------------------------------------------------------------


def held_app(go: asyncio.Event, outcome: list[object]) -> App:
    """Starts an answer, waits for `go`, then tries to finish it and to receive."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]}
        )
        await go.wait()
        await send({"type": "http.response.body", "body": b"body"})
        outcome.append(await receive())

    return app


def test_uvicorn_connection_lost_marks_the_cycle_disconnected() -> None:
    """What `drop` does at once, uvicorn's `connection_lost` does when the peer goes: the
    request's cycle is marked disconnected and its app sees `http.disconnect`."""

    async def probe() -> None:
        go, outcome = asyncio.Event(), list[object]()
        with loopback() as (server, client):
            _, protocol = await connect(HttpToolsProtocol, held_app(go, outcome), server)
            protocol.data_received(GET % b"a")
            await eventually(lambda: protocol.cycle.response_started, "the answer started")
            client.close()
            await eventually(lambda: protocol.cycle.disconnected, "connection_lost marked it")
            go.set()
            await eventually(lambda: bool(outcome), "the app returned")
            assert outcome == [{"type": "http.disconnect"}], outcome

    run(probe())


def test_uvicorn_writes_nothing_for_a_cycle_marked_disconnected() -> None:
    """`drop` marks the cycle disconnected: uvicorn's `send` must then write nothing and
    return (no error, no 500), and `receive` answer `http.disconnect`."""

    async def probe() -> None:
        go, outcome = asyncio.Event(), list[object]()
        with loopback() as (server, client):
            transport, protocol = await connect(HttpToolsProtocol, held_app(go, outcome), server)
            protocol.data_received(GET % b"a")
            await eventually(lambda: protocol.cycle.response_started, "the answer started")
            protocol.cycle.disconnected = True  # as BoundedHttpProtocol.drop does
            go.set()
            await eventually(lambda: bool(outcome), "the app returned")
            assert outcome == [{"type": "http.disconnect"}], outcome
            transport.close()
            received = await read_all(client, 1 << 20)
            assert received.startswith(b"HTTP/1.1 200"), received
            assert received.endswith(b"\r\n\r\n"), f"a disconnected cycle wrote: {received!r}"

    run(probe())


# -- gRPC -----------------------------------------------------------------------------------


def test_the_inference_service_is_unary_with_the_methods_we_serve() -> None:
    assert {m.name for m in SERVICE.methods} == {
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
        "RepositoryModelLoad",
        "RepositoryModelUnload",
    }
    for method in SERVICE.methods:
        assert not method.client_streaming and not method.server_streaming, method.name
        assert hasattr(pb, method.input_type.name) and hasattr(pb, method.output_type.name)
