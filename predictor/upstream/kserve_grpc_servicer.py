"""kserve's gRPC servicer, honouring the served model version.

`versioned_servicer` subclasses `kserve.protocol.grpc.servicer.InferenceServicer` so that
ModelReady and ModelMetadata answer the served version like the unversioned
request, and any other version NOT_FOUND naming both (predictor.model.versions).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from grpc_interceptor.exceptions import NotFound
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.model_repository_extension import ModelRepositoryExtension

from predictor.model.versions import unserved


def check_upstream() -> None:
    """What this module relies on, exercised on a real `DataPlane` serving a tiny model:
    kserve's `InferenceServicer(data_plane, model_repository_extension)` answers ModelReady
    and ModelMetadata from the data plane through the methods overridden here,
    and its ModelMetadata lists no versions itself (so the patch is still needed)."""
    asyncio.run(_check())


async def _check() -> None:
    from predictor.upstream.probes import TinyModel, served

    class Context:
        """What kserve's servicer reads of a gRPC context: the request's metadata."""

        def invocation_metadata(self) -> tuple[()]:
            return ()

    async def not_found(call: Awaitable[object]) -> bool:
        try:
            await call
        except NotFound:
            return True
        return False

    registry, dataplane = served(TinyModel())
    repository = ModelRepositoryExtension(model_registry=registry)
    own = await InferenceServicer(dataplane, repository).ModelMetadata(
        pb.ModelMetadataRequest(name="tiny"), Context()
    )
    assert own.name == "tiny" and not own.versions, f"kserve's ModelMetadata: {own}"

    servicer = versioned_servicer(dataplane, repository, "tiny", "7")
    for version in ("", "7"):
        ready = await servicer.ModelReady(pb.ModelReadyRequest(name="tiny", version=version), None)
        assert ready.ready, f"ModelReady not answered from the data plane: {ready}"
        metadata = await servicer.ModelMetadata(
            pb.ModelMetadataRequest(name="tiny", version=version), None
        )
        assert list(metadata.versions) == ["7"], f"ModelMetadata: {metadata}"
    for name, request in [
        ("ModelReady", pb.ModelReadyRequest(name="tiny", version="8")),
        ("ModelMetadata", pb.ModelMetadataRequest(name="tiny", version="8")),
    ]:
        assert await not_found(getattr(servicer, name)(request, Context())), name


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
