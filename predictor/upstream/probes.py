"""What the checks of predictor/upstream/ probe kserve with: a tiny model, ready, registered
in a real `ModelRepository` behind a real `DataPlane`."""

from __future__ import annotations

from kserve import Model
from kserve.model_repository import ModelRepository
from kserve.protocol.dataplane import DataPlane

NAME = "tiny"


class TinyModel(Model):  # type: ignore[misc]
    """A kserve model that is ready and does nothing."""

    def __init__(self) -> None:
        super().__init__(NAME)
        self.ready = True


def served(model: Model) -> tuple[ModelRepository, DataPlane]:
    """`model` registered, and the data plane kserve's REST and gRPC answer from."""
    registry = ModelRepository()
    registry.update(model)
    return registry, DataPlane(model_registry=registry)
