"""`python -m predictor --model_dir DIR [kserve flags] [our flags]`: load the model and serve it."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from predictor.artifact import ModelArtifactError
from predictor.cache import TieredCache, build_cache
from predictor.memory import return_large_blocks
from predictor.model_wait import wait_for_model_dir
from predictor.redis_policy import model_seconds_per_row

if TYPE_CHECKING:
    from predictor.model import HousingModel


def main(argv: Sequence[str] | None = None) -> int:
    from predictor.settings import parse_settings

    # Parsed before kserve is imported: `--help` and a bad flag answer at once.
    settings = parse_settings(argv)
    # kserve parses sys.argv when kserve.model_server is imported; import it here, in main.
    import kserve
    from kserve.logging import logger
    from kserve.model_repository import ModelRepository

    from predictor import errors, logs
    from predictor.admission import Admission
    from predictor.app import create_app, extend_kserve_app, served_extensions
    from predictor.grpc_infer import ModelInferServicer
    from predictor.model import HousingModel
    from predictor.routes.health import ModelPresence
    from predictor.server import PredictorServer
    from predictor.upstream import grpc_server, kserve_dataplane, kserve_grpc_servicer
    from predictor.upstream.kserve_repository import repository_extension

    return_large_blocks()
    cache = build_cache(settings.cache)
    model = HousingModel(
        settings.model_name,
        settings.model_dir,
        cache,
        max_batch_size=settings.max_batch_size,
        key_prefix=settings.cache_key_prefix,
    )
    logs.configure(
        settings.log_format,
        settings.log_level,
        errors.CLIENT_ERRORS,
        settings.client_error_log_lines_per_minute,
    )
    registry = ModelRepository()
    server = PredictorServer(
        limits=settings.limits,
        repository=repository_extension(settings.enable_model_repository, registry, model),
        registered_models=registry,
        **settings.server_kwargs,
    )
    if settings.model_wait and not wait_for_model_dir(settings.model_dir, settings.model_wait):
        logger.error("No model in %s after %.0f s", settings.model_dir, settings.model_wait)
    try:
        model.load()
    except ModelArtifactError as e:
        logger.error("Cannot load model: %s", e)
        return 2
    # Everything allocated so far (modules, the model's tables) lives as long as the
    # process: keep it out of the collector's full passes, which otherwise walk ~200k
    # objects and stall requests for 100 ms or more.
    gc.collect()
    gc.freeze()
    app = kserve.model_server.app
    extend_kserve_app(app, settings.model_name, settings.max_batch_size, settings.enable_docs_url)
    kserve_dataplane.list_versions(server.dataplane, model.name, model.version)
    extensions = served_extensions(settings.enable_model_repository)
    kserve_dataplane.list_extensions(server.dataplane, extensions)
    kserve_grpc_servicer.serve_versions_over_grpc(model.name, model.version)
    presence = ModelPresence(model, registry)
    admission = Admission(settings.max_inflight)  # one in-flight bound for REST and gRPC
    grpc_server.install(
        presence,
        settings.unloaded_liveness_seconds,
        settings.enable_grpc_reflection,
        settings.grpc_message_bounds,
        ModelInferServicer(model, admission, registry).ModelInfer,
    )
    server.serve_app(create_app(settings, model, app, presence, admission))
    _use_uvloop(settings.event_loop)
    _tie_to_lifespan(cache, app, model)
    server.start([model])
    return 0


def _use_uvloop(event_loop: str) -> None:
    """Run on uvloop unless told not to.

    kserve's ModelServer starts uvicorn inside its own `asyncio.run`, so uvicorn's `loop`
    setting never takes effect and the server would run on the default asyncio loop.
    """
    if event_loop == "asyncio":
        return
    try:
        import uvloop
    except ImportError:
        if event_loop == "uvloop":
            raise
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    # kserve asks for the current loop before it starts; uvloop's policy makes none itself.
    asyncio.set_event_loop(asyncio.new_event_loop())


def _tie_to_lifespan(cache: TieredCache, app: Any, model: HousingModel) -> None:
    """Probe the cache's Redis tier once the event loop runs (and judge whether it pays for
    this model); close it when the server stops."""
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Any]:
        regressor = model.regressor if cache.shared else None
        await cache.start(None if regressor is None else model_seconds_per_row(regressor.predict))
        async with inner(app) as state:
            yield state
        await cache.close()

    app.router.lifespan_context = lifespan


if __name__ == "__main__":
    sys.exit(main())
