"""kserve's gRPC servicer, honouring the served model version.

`versioned_servicer` subclasses `kserve.protocol.grpc.servicer.InferenceServicer` so that
ModelReady and ModelMetadata answer the served version like the unversioned
request, and any other version NOT_FOUND naming both (predictor.model.versions).
"""

from __future__ import annotations

import inspect
from typing import Any

from grpc_interceptor.exceptions import NotFound
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.model_repository_extension import ModelRepositoryExtension

from predictor.model.versions import unserved

_PATCHED_METHODS = ("ModelReady", "ModelMetadata")


def check_upstream() -> None:
    """What this module relies on: `InferenceServicer(data_plane, model_repository_extension)`
    and its async methods `(self, request, context)`."""
    init = list(inspect.signature(InferenceServicer.__init__).parameters)
    assert init[1:3] == ["data_plane", "model_repository_extension"], init
    for name in _PATCHED_METHODS:
        method = getattr(InferenceServicer, name)
        assert inspect.iscoroutinefunction(method), name
        assert list(inspect.signature(method).parameters) == ["self", "request", "context"], name


def versioned_servicer(
    dataplane: DataPlane, repository: ModelRepositoryExtension, model_name: str, served: str
) -> InferenceServicer:
    """kserve's servicer for `dataplane`, honouring versions in ModelReady and ModelMetadata
    (ModelInfer is predictor.grpc.infer's)."""

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

    return VersionedServicer(dataplane, repository)
