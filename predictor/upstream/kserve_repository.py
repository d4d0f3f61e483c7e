"""The V2 model repository extension (load/unload over REST and gRPC), off by default.

kserve serves `POST /v2/repository/models/{name}/load|unload` and gRPC
`RepositoryModelLoad|Unload` to anyone who can reach the port; one anonymous unload took
the model away for good. Here the extension refuses both (REST 403, gRPC
PERMISSION_DENIED) unless `--enable_model_repository true`; when enabled, `load` really
loads the model again from its directory (kserve's own does nothing for a custom model).
"""

from __future__ import annotations

import inspect
from typing import Final, Protocol

from grpc_interceptor.exceptions import PermissionDenied
from kserve.errors import ModelNotFound, ModelNotReady
from kserve.model_repository import ModelRepository
from kserve.protocol.model_repository_extension import ModelRepositoryExtension

DISABLED_MESSAGE: Final = (
    "the model repository API is disabled; start the server with "
    "--enable_model_repository true to allow loading and unloading models"
)


def check_upstream() -> None:
    """What this module relies on: the extension's `__init__(model_registry)` and its
    async `load(model_name)` / `unload(model_name)`, which kserve's REST and gRPC call."""
    init = inspect.signature(ModelRepositoryExtension.__init__)
    assert "model_registry" in init.parameters, "ModelRepositoryExtension(model_registry=...)"
    for name in ("load", "unload"):
        method = getattr(ModelRepositoryExtension, name)
        assert inspect.iscoroutinefunction(method), name
        assert list(inspect.signature(method).parameters) == ["self", "model_name"], name


class RepositoryDisabled(PermissionDenied):  # type: ignore[misc]
    """Refused: kserve's gRPC interceptor turns it into PERMISSION_DENIED, predictor.errors
    into `403 {"error": ...}`."""

    def __init__(self) -> None:
        super().__init__(DISABLED_MESSAGE)


class DisabledRepository(ModelRepositoryExtension):  # type: ignore[misc]
    """Lists models like kserve's, refuses to load or unload any."""

    async def load(self, model_name: str) -> None:
        raise RepositoryDisabled

    async def unload(self, model_name: str) -> None:
        raise RepositoryDisabled


class Reloadable(Protocol):
    """The served model, as the repository extension needs it."""

    @property
    def name(self) -> str: ...

    def load(self) -> bool: ...


class ReloadingRepository(ModelRepositoryExtension):  # type: ignore[misc]
    """kserve's extension, except that `load` reads our model's directory again;
    `load_errors`: what that load raises for a directory it cannot use."""

    def __init__(
        self,
        model_registry: ModelRepository,
        model: Reloadable,
        load_errors: tuple[type[Exception], ...],
    ) -> None:
        super().__init__(model_registry=model_registry)
        self._registry = model_registry
        self._model = model
        self._load_errors = load_errors

    async def load(self, model_name: str) -> None:
        if model_name != self._model.name:
            raise ModelNotFound(model_name)
        try:
            self._model.load()
        except self._load_errors as e:
            raise ModelNotReady(model_name, str(e)) from e
        self._registry.update(self._model)


def repository_extension(
    enabled: bool,
    registry: ModelRepository,
    model: Reloadable,
    load_errors: tuple[type[Exception], ...],
) -> ModelRepositoryExtension:
    if enabled:
        return ReloadingRepository(registry, model, load_errors)
    return DisabledRepository(registry)
