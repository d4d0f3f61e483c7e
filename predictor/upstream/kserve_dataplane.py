"""kserve's data plane: the served model version in V2 model metadata (REST), and the
extensions really served in the server metadata (`GET /v2`, gRPC ServerMetadata).

kserve lists `model_repository_extension` whether or not it is served, and never the binary
tensor extension, which this server serves on REST.
"""

from __future__ import annotations

import inspect
from typing import Any

from kserve.protocol.dataplane import DataPlane


def check_upstream() -> None:
    """What this module relies on: `DataPlane.model_metadata(model_name)`, async."""
    method = DataPlane.model_metadata
    assert inspect.iscoroutinefunction(method), "DataPlane.model_metadata is async"
    assert list(inspect.signature(method).parameters)[:2] == ["self", "model_name"]
    assert not inspect.iscoroutinefunction(DataPlane.metadata), "DataPlane.metadata is sync"
    assert list(inspect.signature(DataPlane.metadata).parameters) == ["self"]


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
