"""One model version, named the same way everywhere, and the V2 routes that name it.

The version is the first 16 hex digits of the artifact's sha256 (`HousingModel.version`):
the `X-Model-Version` header, V2 `model_version`, the metadata's `versions`, gRPC and the
cache keys all use it. kserve registers `/v2/models/{name}/versions/{version}/...` but
answers 501 on them and lists no versions; here the served version answers exactly like
the unversioned routes (REST and gRPC), and any other version is a 404 that names both.
"""

from __future__ import annotations

from typing import Any, Final

from grpc_interceptor.exceptions import NotFound
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import server as grpc_server
from kserve.protocol.grpc.servicer import InferenceServicer
from starlette.types import Scope

# The routes of a model under a version: metadata, readiness and inference.
_VERSIONED_SUFFIXES: Final = ("", "ready", "infer")


class UnservedVersion(LookupError):
    """A request names a version of the model that this server does not serve."""


def _unserved(model_name: str, asked: str, served: str) -> str:
    return f"model {model_name} has no version {asked!r}: this server serves version {served}"


def unversioned_path(scope: Scope, model_name: str, served: str) -> Scope:
    """The scope of `/v2/models/NAME/versions/SERVED[/ready|/infer]` as the unversioned
    route's; other models' and unknown routes' scopes unchanged (kserve answers them)."""
    prefix = f"/v2/models/{model_name}/versions/"
    path: str = scope["path"]
    if not path.startswith(prefix):
        return scope
    version, _, suffix = path[len(prefix) :].partition("/")
    if suffix not in _VERSIONED_SUFFIXES:
        return scope
    if version != served:
        raise UnservedVersion(_unserved(model_name, version, served))
    unversioned = f"/v2/models/{model_name}" + (f"/{suffix}" if suffix else "")
    return {**scope, "path": unversioned, "raw_path": unversioned.encode()}


def list_versions(dataplane: DataPlane, served_name: str, served: str) -> None:
    """Make V2 model metadata list the served version (REST; gRPC below adds it too)."""
    metadata = dataplane.model_metadata

    async def with_versions(model_name: str) -> dict[str, Any]:  # kserve passes it by name
        found: dict[str, Any] = await metadata(model_name)
        return {**found, "versions": [served]} if model_name == served_name else found

    dataplane.model_metadata = with_versions


def serve_versions_over_grpc(model_name: str, served: str) -> None:
    """Have kserve's gRPC server honour versions in ModelReady, ModelMetadata, ModelInfer.

    kserve builds its servicer from `kserve.protocol.grpc.server.InferenceServicer` when
    the server starts, and offers no other way in: this replaces that name with a
    subclass, before `ModelServer.start`.
    """

    def check(name: str, asked: str) -> None:
        if asked and name == model_name and asked != served:
            raise NotFound(_unserved(model_name, asked, served))

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
            return await super().ModelInfer(request, context)

    grpc_server.InferenceServicer = VersionedServicer
