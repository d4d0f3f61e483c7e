"""kserve's data plane: the served model version in V2 model metadata (REST), and the
extensions really served in the server metadata (`GET /v2`, gRPC ServerMetadata).

kserve lists `model_repository_extension` whether or not it is served, and never the binary
tensor extension, which this server serves on REST.
"""

from __future__ import annotations

import asyncio
from typing import Any

from kserve.protocol.dataplane import DataPlane


def check_upstream() -> None:
    """What this module relies on, exercised on a real `DataPlane` serving a tiny model:
    kserve's own answers lack the served version and list `model_repository_extension`
    whether served or not (so both patches are still needed), and the two methods patched
    here on the instance are what kserve's REST endpoints and gRPC servicer call."""
    asyncio.run(_check())


async def _check() -> None:
    from kserve.errors import ModelNotFound
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc.servicer import InferenceServicer
    from kserve.protocol.rest.v2_endpoints import V2Endpoints

    from predictor.upstream.probes import TinyModel, served

    _, dataplane = served(TinyModel())
    own_model = await dataplane.model_metadata("tiny")
    assert own_model["name"] == "tiny", f"kserve's model metadata changed: {own_model}"
    assert "versions" not in own_model, f"kserve lists model versions itself now: {own_model}"
    own_server = dataplane.metadata()
    assert own_server["extensions"] == ["model_repository_extension"], (
        f"kserve's server metadata lists other extensions now: {own_server}"
    )

    list_versions(dataplane, "tiny", "7")
    list_extensions(dataplane, ["shown"])
    assert (await dataplane.model_metadata("tiny"))["versions"] == ["7"]
    try:
        await dataplane.model_metadata("other")
    except ModelNotFound:
        pass
    else:
        raise AssertionError("DataPlane.model_metadata of an unknown model no longer raises")
    server = dataplane.metadata()
    assert server == {**own_server, "extensions": ["shown"]}, server

    rest = V2Endpoints(dataplane)
    rest_model = await rest.model_metadata("tiny")
    assert rest_model.versions == ["7"], f"REST model metadata not the data plane's: {rest_model}"
    rest_server = await rest.metadata()
    assert rest_server.extensions == ["shown"], (
        f"REST server metadata not the data plane's: {rest_server}"
    )

    grpc = InferenceServicer(dataplane, None)
    grpc_server = await grpc.ServerMetadata(pb.ServerMetadataRequest(), None)
    assert list(grpc_server.extensions) == ["shown"], f"gRPC ServerMetadata: {grpc_server}"
    # kserve's servicer passes `model_name=` by keyword, and copies no versions (see
    # kserve_grpc_servicer): what matters here is that the call reaches the patch.
    grpc_model = await grpc.ModelMetadata(pb.ModelMetadataRequest(name="tiny"), None)
    assert grpc_model.name == "tiny", f"gRPC ModelMetadata: {grpc_model}"


def list_versions(dataplane: DataPlane, served_name: str, served: str) -> None:
    """Make V2 model metadata list the served version (gRPC: kserve_grpc_servicer)."""
    metadata = dataplane.model_metadata

    async def with_versions(model_name: str) -> dict[str, Any]:  # kserve passes it by name
        found: dict[str, Any] = await metadata(model_name)
        return {**found, "versions": [served]} if model_name == served_name else found

    dataplane.model_metadata = with_versions


def list_extensions(dataplane: DataPlane, extensions: list[str]) -> None:
    """Make the server metadata list `extensions` (REST `GET /v2` and gRPC alike)."""
    metadata = dataplane.metadata

    def with_extensions() -> dict[str, Any]:
        return {**metadata(), "extensions": list(extensions)}

    dataplane.metadata = with_extensions
