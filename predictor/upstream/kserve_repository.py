"""The V2 model repository extension (load/unload over REST and gRPC), off by default.

kserve serves `POST /v2/repository/models/{name}/load|unload` and gRPC
`RepositoryModelLoad|Unload` to anyone who can reach the port; one anonymous unload took
the model away for good. Here the extension refuses both (REST 403, gRPC
PERMISSION_DENIED) unless `--enable_model_repository true`; when enabled, `load` really
loads the model again from its directory (kserve's own does nothing for a custom model).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
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
    """What this module relies on, exercised on a real `ModelRepository` holding a tiny
    model: kserve's REST endpoints and gRPC servicer call the extension's `load` and
    `unload` (so the overrides here are what is served); its `index` and `unload` work on
    the registry given to `__init__`; `registry.update` serves a model again; and kserve's
    gRPC interceptor answers the refusal PERMISSION_DENIED and an unknown model NOT_FOUND.
    (Not a failed load over gRPC: kserve's interceptor reads `ModelNotReady.reason`, which
    kserve's `ModelNotReady` lacks; REST answers it through predictor.errors.)"""
    asyncio.run(_check())


async def _check() -> None:
    import grpc
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor
    from kserve.protocol.grpc.servicer import InferenceServicer
    from kserve.protocol.rest.v2_endpoints import V2Endpoints

    from predictor.upstream.probes import TinyModel, served

    class Tiny(TinyModel):
        def __init__(self) -> None:
            super().__init__()
            self.loads = 0
            self.fail = False

        def load(self) -> bool:
            if self.fail:
                raise OSError("no model here")
            self.loads += 1
            self.ready = True
            return True

    async def raised(call: Awaitable[object]) -> Exception | None:
        try:
            await call
        except Exception as e:
            return e
        return None

    model = Tiny()
    registry, dataplane = served(model)
    disabled = repository_extension(False, registry, model, (OSError,))
    rest = V2Endpoints(dataplane, disabled)
    servicer = InferenceServicer(dataplane, disabled)
    load = pb.RepositoryModelLoadRequest(model_name="tiny")
    unload = pb.RepositoryModelUnloadRequest(model_name="tiny")
    calls: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("REST load", lambda: rest.load("tiny")),
        ("REST unload", lambda: rest.unload("tiny")),
        ("gRPC load", lambda: servicer.RepositoryModelLoad(load, None)),
        ("gRPC unload", lambda: servicer.RepositoryModelUnload(unload, None)),
    ]
    for via, refused in calls:
        error = await raised(refused())
        assert isinstance(error, RepositoryDisabled), (
            f"kserve's {via} does not call the extension's: {error!r}"
        )
    assert registry.get_model("tiny") is model and model.loads == 0
    index = await disabled.index()
    assert index == [{"name": "tiny", "state": "Ready", "reason": ""}], f"kserve's index: {index}"

    enabled = repository_extension(True, registry, model, (OSError,))
    rest = V2Endpoints(dataplane, enabled)
    assert await rest.unload("tiny") == {"name": "tiny", "unload": True}
    assert registry.get_model("tiny") is None, "kserve's unload left the model registered"
    assert await rest.load("tiny") == {"name": "tiny", "load": True}
    assert model.loads == 1, "REST load did not reach ReloadingRepository.load"
    assert await registry.is_model_ready("tiny"), "registry.update did not serve the model again"
    assert (await dataplane.model_metadata("tiny"))["name"] == "tiny"
    not_found = await raised(rest.load("other"))
    assert isinstance(not_found, ModelNotFound), repr(not_found)
    model.fail = True
    not_ready = await raised(rest.load("tiny"))
    assert isinstance(not_ready, ModelNotReady) and "no model here" in str(not_ready)

    class Context:
        """What the interceptor calls on a gRPC context: `abort(code, details)`."""

        async def abort(self, code: grpc.StatusCode, details: str) -> None:
            raise _Aborted(code)

    interceptor = ExceptionToStatusInterceptor()
    for error, code in [
        (RepositoryDisabled(), grpc.StatusCode.PERMISSION_DENIED),
        (not_found, grpc.StatusCode.NOT_FOUND),
    ]:
        aborted = await raised(interceptor.handle_exception(error, None, Context(), "m"))
        assert isinstance(aborted, _Aborted) and aborted.code == code, (error, aborted)


class _Aborted(Exception):
    def __init__(self, code: object) -> None:
        self.code = code


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
