"""What predictor/upstream/uvicorn_protocol.py and predictor/grpc/server.py rely on in uvicorn,
httptools and kserve's V2 protos: each test fails, naming what changed, when an upgrade moves it."""

from __future__ import annotations

import inspect

import httptools
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from uvicorn.protocols.http import flow_control, httptools_impl

from predictor.grpc.server import SERVICE


def source(obj: object) -> str:
    return inspect.getsource(obj)  # type: ignore[arg-type]


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
    ],
)
def test_uvicorn_protocol_has_the_methods_we_override_or_call(name: str) -> None:
    assert callable(getattr(httptools_impl.HttpToolsProtocol, name, None)), name


def test_uvicorn_makes_its_flow_control_in_connection_made() -> None:
    """We replace `self.flow` right after it: it must be made there, from the transport."""
    assert "self.flow = FlowControl(transport)" in source(
        httptools_impl.HttpToolsProtocol.connection_made
    )


def test_uvicorn_waits_on_flow_drain_before_writing_while_paused() -> None:
    """The per-connection bound is checked in `drain`, which uvicorn awaits before it
    writes any part of an answer while the transport is paused."""
    send = source(httptools_impl.RequestResponseCycle.send)
    assert "if self.flow.write_paused and not self.disconnected:" in send
    assert "await self.flow.drain()" in send
    assert {"drain", "pause_writing", "resume_writing"} <= set(vars(flow_control.FlowControl))


def test_uvicorn_data_received_is_what_feed_replaces() -> None:
    """`_feed` is uvicorn's `data_received` save for unsupported upgrades."""
    received = source(httptools_impl.HttpToolsProtocol.data_received)
    assert "self.parser.feed_data(data)" in received
    assert "except httptools.HttpParserUpgrade:" in received
    assert "self._unsupported_upgrade_warning()" in received


def test_httptools_upgrade_error_carries_the_offset_of_what_follows() -> None:
    parser = httptools.HttpRequestParser(_Callbacks())
    request = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
    with pytest.raises(httptools.HttpParserUpgrade) as raised:
        parser.feed_data(request + b"NEXT")
    assert raised.value.args[0] == len(request)


class _Callbacks:
    """What httptools calls back: nothing needed here."""


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


def test_uvicorn_marks_the_cycle_disconnected_as_drop_does() -> None:
    """`drop` does at once what uvicorn's `connection_lost` does a loop turn later."""
    lost = source(httptools_impl.HttpToolsProtocol.connection_lost)
    assert "if self.cycle and not self.cycle.response_complete:" in lost
    assert "self.cycle.disconnected = True" in lost
    assert "if self.disconnected:" in source(httptools_impl.RequestResponseCycle.send)
