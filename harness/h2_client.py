"""A raw HTTP/2 client (the `h2` library) for hostile gRPC calls against a real server.

`RawH2` speaks HTTP/2 over a plain socket with every check of its own turned off, so that
it can send what no gRPC client would: non-UTF-8 header bytes, a message shorter than its
length prefix, endless CONTINUATION frames, streams reset as soon as they open, PING
floods, and never a WINDOW_UPDATE. Used by tests/test_grpc_hostile.py.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from hpack import Encoder
from hyperframe.frame import ContinuationFrame, HeadersFrame

SERVICE = "inference.GRPCInferenceService"
Header = tuple[bytes, bytes]


def grpc_message(payload: bytes, length: int | None = None) -> bytes:
    """gRPC's framing: uncompressed flag, 4-byte length (`length` to lie about it), payload."""
    return b"\x00" + struct.pack(">I", len(payload) if length is None else length) + payload


def call_headers(
    path: bytes = f"/{SERVICE}/ServerReady".encode(),
    authority: bytes = b"127.0.0.1",
    extra: Sequence[Header] = (),
) -> list[Header]:
    return [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", path),
        (b":authority", authority),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
        *extra,
    ]


@dataclass
class Seen:
    """What the server sent back on one connection so far."""

    statuses: dict[int, bytes] = field(default_factory=dict)  # stream → grpc-status
    data: dict[int, int] = field(default_factory=dict)  # stream → DATA bytes received
    resets: set[int] = field(default_factory=set)
    goaway: h2.events.ConnectionTerminated | None = None
    closed: bool = False  # the server closed the TCP connection
    pings_acked: int = 0
    max_concurrent_streams: int | None = None


class RawH2:
    """One HTTP/2 connection to `port`; `window`: the initial stream window it advertises
    (0: the server can send no DATA until a WINDOW_UPDATE, which never comes unless asked);
    `rcvbuf`: a small kernel receive buffer, so that unread bytes stay in the server."""

    def __init__(self, port: int, *, window: int | None = None, rcvbuf: int | None = None):
        self.sock = socket.socket()
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            validate_inbound_headers=False,
        )
        self.conn = h2.connection.H2Connection(config)
        self.conn.initiate_connection()
        if window is not None:
            self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.seen = Seen()
        self.broken = False
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def call(self, headers: Sequence[Header], body: bytes | None = None, end: bool = True) -> int:
        """Open a stream with `headers`, then `body` (if any); END_STREAM when `end`."""
        stream = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream, headers, end_stream=end and body is None)
        self.flush()
        if body is not None:
            self.send_body(stream, body, end)
        return stream

    def send_body(self, stream: int, body: bytes, end: bool = True, timeout: float = 10) -> None:
        """Send `body` as fast as the server's flow-control windows allow."""
        deadline = time.monotonic() + timeout
        sent = 0
        while True:
            room = min(
                self.conn.local_flow_control_window(stream),
                self.conn.max_outbound_frame_size,
                len(body) - sent,
            )
            if room > 0 or sent == len(body):
                last = sent + room == len(body)
                self.conn.send_data(stream, body[sent : sent + room], end_stream=end and last)
                self.flush()
                sent += room
                if last:
                    return
            elif time.monotonic() > deadline:
                raise TimeoutError(f"the server's window stayed shut ({sent} bytes sent)")
            else:
                self.read(0.05)

    def reset(self, stream: int) -> None:
        self.conn.reset_stream(stream)
        self.flush()

    def ping(self, count: int = 1) -> None:
        for i in range(count):
            self.conn.ping(struct.pack(">Q", i))
        self.flush()

    def continuation_flood(self, frames: int, frame_bytes: int = 16_000) -> int:
        """HEADERS without END_HEADERS, then up to `frames` CONTINUATION frames of
        literal headers, never ending; returns how many frames the server took before it
        closed the connection."""
        stream = self.conn.get_next_available_stream_id()
        self.conn.state_machine.process_input(h2.connection.ConnectionInputs.SEND_HEADERS)
        first = HeadersFrame(stream)
        first.data = Encoder().encode(call_headers(), huffman=False)
        self.send_raw(first.serialize())
        block = _literal_headers(frame_bytes)
        frame = ContinuationFrame(stream)
        frame.data = block
        wire = frame.serialize()
        for sent in range(frames):
            try:
                self.send_raw(wire)
            except OSError:
                self.seen.closed = True
                return sent
        return frames

    def read(self, seconds: float, until: object = None) -> Seen:
        """Read and answer (ACK settings, etc.) for up to `seconds`, or until `until()`."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.seen.closed:
            if callable(until) and until():
                break
            self.sock.settimeout(max(0.01, min(0.2, deadline - time.monotonic())))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                self.seen.closed = True
                break
            if not data:
                self.seen.closed = True
                break
            if self.broken:
                continue  # past what h2 could parse: only the end of the connection counts
            try:
                self._handle(self.conn.receive_data(data))
            except h2.exceptions.ProtocolError:
                self.broken = True
                continue
            with contextlib.suppress(OSError):
                self.flush()
        return self.seen

    def _handle(self, events: Iterable[h2.events.Event]) -> None:
        seen = self.seen
        for event in events:
            if isinstance(event, h2.events.RemoteSettingsChanged):
                setting = event.changed_settings.get(
                    h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS
                )
                if setting is not None:
                    seen.max_concurrent_streams = setting.new_value
            elif isinstance(event, h2.events.DataReceived):
                seen.data[event.stream_id] = seen.data.get(event.stream_id, 0) + len(event.data)
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.TrailersReceived | h2.events.ResponseReceived):
                for name, value in event.headers:
                    if name == b"grpc-status":
                        seen.statuses[event.stream_id] = value
            elif isinstance(event, h2.events.StreamReset):
                seen.resets.add(event.stream_id)
            elif isinstance(event, h2.events.ConnectionTerminated):
                seen.goaway = event
            elif isinstance(event, h2.events.PingAckReceived):
                seen.pings_acked += 1

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> RawH2:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _literal_headers(size: int) -> bytes:
    """HPACK literal headers, never indexed (so the server's table does not bound them),
    about `size` bytes in all."""
    name, value = b"x-flood", b"a" * 100
    one = b"\x10" + bytes([len(name)]) + name + bytes([len(value)]) + value
    return one * (size // len(one))
