"""kserve's gRPC servicer, honouring the served model version.

kserve builds its servicer from `kserve.protocol.grpc.server.InferenceServicer` when the
server starts, and offers no other way in: `serve_versions_over_grpc` replaces that name
with a subclass, before `ModelServer.start`, so that ModelReady, ModelMetadata and
ModelInfer answer the served version like the unversioned request and any other version
NOT_FOUND naming both (predictor.versions). ModelInfer also refuses a tensor with two
`*_contents` fields set (predictor.protocol.v2.grpc_contents_problem), which kserve's
decoder would half read.
"""

from __future__ import annotations

import inspect
from typing import Any

from grpc_interceptor.exceptions import NotFound
from kserve.errors import InvalidInput
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import server as grpc_server
from kserve.protocol.grpc.servicer import InferenceServicer

from predictor.protocol.v2 import grpc_contents_problem
from predictor.versions import unserved

_PATCHED_METHODS = ("ModelReady", "ModelMetadata", "ModelInfer")


def check_upstream() -> None:
    """What this module relies on: the name kserve builds its servicer from, and the
    servicer's async methods `(self, request, context)`."""
    source = inspect.getsource(grpc_server)
    assert "InferenceServicer(" in source, "kserve's gRPC server builds InferenceServicer"
    for name in _PATCHED_METHODS:
        method = getattr(InferenceServicer, name)
        assert inspect.iscoroutinefunction(method), name
        assert list(inspect.signature(method).parameters) == ["self", "request", "context"], name


def serve_versions_over_grpc(model_name: str, served: str) -> None:
    """Have kserve's gRPC server honour versions in ModelReady, ModelMetadata, ModelInfer."""

    def check(name: str, asked: str) -> None:
        if asked and name == model_name and asked != served:
            raise NotFound(unserved(model_name, asked, served))

    class VersionedServicer(InferenceServicer):  # type: ignore[misc]
        async def ModelReady(self, request: Any, context: Any) -> Any:
            check(request.name, request.version)
            return await super().ModelReady(request, context)

        async def ModelMetadata(self, request: Any, context: Any) -> Any:
            check(request.name, request.version)
            response: pb.ModelMetadataResponse = await super().ModelMetadata(request, context)
            if request.name == model_name:
                response.versions[:] = [served]
            return response

        async def ModelInfer(self, request: Any, context: Any) -> Any:
            check(request.model_name, request.model_version)
            problem = grpc_contents_problem(request.inputs)
            if problem:
                raise InvalidInput(problem)
            return await super().ModelInfer(request, context)

    grpc_server.InferenceServicer = VersionedServicer
