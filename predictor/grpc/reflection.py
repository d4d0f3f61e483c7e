"""gRPC server reflection under both names clients ask: `grpc.reflection.v1` and `v1alpha`.

grpcio-reflection ships only `grpc.reflection.v1alpha.ServerReflection`; current grpcurl,
Postman and grpc-java's and grpc-go's clients ask `grpc.reflection.v1.ServerReflection`
first (v1alpha clients keep working). v1 repeats v1alpha's messages field for field under
a new package, so the bytes on the wire are the same: one servicer (grpcio-reflection's
public `aio.ReflectionServicer`) answers both method paths with v1alpha's message classes.

Clients describe every service listed (k6's and grpc-go's ask for the file of each), so
v1's own descriptor is added to the default pool too: v1alpha's file under v1's package
and file name. Without it k6 found `grpc.reflection.v1.ServerReflection` listed but not
describable, and gave up on reflection altogether.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc import aio
from grpc_reflection.v1alpha import reflection
from grpc_reflection.v1alpha import reflection_pb2 as messages

V1ALPHA: Final = reflection.SERVICE_NAME  # grpc.reflection.v1alpha.ServerReflection
V1: Final = "grpc.reflection.v1.ServerReflection"
METHOD: Final = "ServerReflectionInfo"


V1_FILE: Final = "grpc/reflection/v1/reflection.proto"


def _describe_v1() -> None:
    """Add v1's file descriptor to the default pool, unless it is there already."""
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(V1_FILE)
        return
    except KeyError:
        pass
    source = descriptor_pb2.FileDescriptorProto()
    messages.DESCRIPTOR.CopyToProto(source)
    old, new = f".{source.package}.", ".grpc.reflection.v1."
    source.name = V1_FILE
    source.package = new.strip(".")
    source.options.Clear()
    for message in source.message_type:
        for field in message.field:
            if field.type_name:
                field.type_name = field.type_name.replace(old, new)
    for method in source.service[0].method:
        method.input_type = method.input_type.replace(old, new)
        method.output_type = method.output_type.replace(old, new)
    pool.Add(source)


def add_reflection(server: aio.Server, services: Iterable[str]) -> None:
    """Describe `services` (and reflection itself, both versions) on `server`."""
    _describe_v1()
    servicer = reflection.aio.ReflectionServicer((*services, V1, V1ALPHA))
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=messages.ServerReflectionRequest.FromString,
        response_serializer=messages.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(name, {METHOD: handler}) for name in (V1, V1ALPHA)]
    )
