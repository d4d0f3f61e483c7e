"""The model name of a gRPC repository load or unload, in whichever layout the client sent.

kserve's V2 proto puts `model_name` in field 1 of RepositoryModelLoadRequest and
RepositoryModelUnloadRequest. Triton's (what tritonclient sends) and MLServer's put
`repository_name` in field 1 and `model_name` in field 2 (Triton: `parameters` in 3), so
kserve's message read tritonclient's load as model "" (field 2 unknown) and would read a
named repository as the model. Here the bytes are read with Triton's layout: a field 2
is the model name (a Triton or MLServer client); without one, field 1 is (kserve's layout).
A Triton-layout request naming a repository and no model is read as kserve's: it names no
model, and that repository name then fails as an unknown model, as before.

`RepositoryRpcs` answers the two calls from the repository extension's public `load` and
`unload` (kserve's servicer indexes what they return, which is None: every call that got
that far was INTERNAL, after the model had been unloaded).
"""

from __future__ import annotations

from typing import Any, Final, TypeVar

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.model_repository_extension import ModelRepositoryExtension

M = TypeVar("M", bound=Message)


def _triton_layout() -> type[Message]:
    """`{repository_name = 1; model_name = 2}` in a pool of its own (tritonclient's
    classes would clash with kserve's `inference.*` names)."""
    source = descriptor_pb2.FileDescriptorProto(
        name="predictor/triton_repository.proto", package="predictor.triton", syntax="proto3"
    )
    message = source.message_type.add(name="RepositoryModelRequest")
    for number, name in ((1, "repository_name"), (2, "model_name")):
        message.field.add(
            name=name,
            number=number,
            type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
            label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
        )
    built = descriptor_pool.DescriptorPool().Add(source)
    layout: type[Message] = message_factory.GetMessageClass(
        built.message_types_by_name[message.name]
    )
    return layout


_TRITON: Final = _triton_layout()


def model_name(raw: bytes) -> str:
    """The model a repository request names (see the module docstring); raises
    `DecodeError` for bytes that are no such message."""
    request = _TRITON.FromString(raw)
    name: str = request.model_name or request.repository_name  # type: ignore[attr-defined]
    return name


def repository_request(request_class: type[M], raw: bytes) -> M:
    """kserve's `request_class` (RepositoryModelLoad/UnloadRequest) naming the model `raw` names."""
    request: M = request_class(model_name=model_name(raw))
    return request


class RepositoryRpcs:
    """RepositoryModelLoad and RepositoryModelUnload over `extension`."""

    def __init__(self, extension: ModelRepositoryExtension) -> None:
        self._extension = extension

    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: Any
    ) -> pb.RepositoryModelLoadResponse:
        await self._extension.load(request.model_name)
        return pb.RepositoryModelLoadResponse(model_name=request.model_name, isLoaded=True)

    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: Any
    ) -> pb.RepositoryModelUnloadResponse:
        await self._extension.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse(model_name=request.model_name, isUnloaded=True)
