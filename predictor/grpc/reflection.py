"""gRPC server reflection under both names clients ask: `grpc.reflection.v1` and `v1alpha`.

grpcio-reflection ships only `grpc.reflection.v1alpha.ServerReflection`; current grpcurl,
Postman and grpc-java's and grpc-go's clients ask `grpc.reflection.v1.ServerReflection`
first (v1alpha clients keep working). v1 repeats v1alpha's messages field for field under
a new package, so the bytes on the wire are the same: one servicer (grpcio-reflection's
public `aio.ReflectionServicer`) answers both method paths with v1alpha's message classes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import grpc
from grpc import aio
from grpc_reflection.v1alpha import reflection
from grpc_reflection.v1alpha import reflection_pb2 as messages

V1ALPHA: Final = reflection.SERVICE_NAME  # grpc.reflection.v1alpha.ServerReflection
V1: Final = "grpc.reflection.v1.ServerReflection"
METHOD: Final = "ServerReflectionInfo"


def add_reflection(server: aio.Server, services: Iterable[str]) -> None:
    """Describe `services` (and reflection itself, both versions) on `server`."""
    servicer = reflection.aio.ReflectionServicer((*services, V1, V1ALPHA))
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=messages.ServerReflectionRequest.FromString,
        response_serializer=messages.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(name, {METHOD: handler}) for name in (V1, V1ALPHA)]
    )
