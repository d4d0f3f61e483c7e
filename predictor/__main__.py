"""`python -m predictor --model_dir DIR [kserve flags] [our flags]`: load the model and serve it."""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from predictor.cache.redis_policy import model_seconds_per_row
from predictor.cache.tiers import TieredCache, build_cache
from predictor.memory import return_large_blocks
from predictor.model.artifact import ModelArtifactError
from predictor.model.wait import wait_for_model_dir

if TYPE_CHECKING:
    from kserve.model_repository import ModelRepository

    from predictor.model.housing import HousingModel

HTTP_PORT: Final = 8080
HTTPS_PORT: Final = 8443
# How long a stop waits for REST's open requests, then for gRPC's calls (kserve's value).
GRACE_SECONDS: Final = 30


def main(argv: Sequence[str] | None = None) -> int:
    from predictor.settings_cli import parse_settings

    # Parsed before kserve is imported: `--help` and a bad flag answer at once.
    settings = parse_settings(argv)
    import uvicorn
    from kserve.logging import logger
    from kserve.model_repository import ModelRepository
    from kserve.protocol.dataplane import DataPlane

    from predictor import errors, logs
    from predictor.admission import Admission
    from predictor.grpc import bounds, tls
    from predictor.grpc.calls import Calls
    from predictor.grpc.health import Health, V2Health
    from predictor.grpc.infer import ModelInferServicer
    from predictor.grpc.repository import RepositoryRpcs
    from predictor.grpc.server import SERVICE, GrpcConfig, GrpcServices, build_grpc_server
    from predictor.model.housing import HousingModel
    from predictor.model.presence import ModelPresence
    from predictor.rest.app import create_app, served_extensions
    from predictor.rest.kserve_app import kserve_app
    from predictor.server import Servers, record_early_signals
    from predictor.upstream import kserve_dataplane
    from predictor.upstream.grpc_errors import SEND_FAILURES
    from predictor.upstream.kserve_grpc_servicer import versioned_servicer
    from predictor.upstream.kserve_repository import repository_extension
    from predictor.upstream.uvicorn_protocol import protocol_factory
    from predictor.upstream.uvicorn_server import OwnedSignalsServer

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
        errors.CLIENT_ERRORS + SEND_FAILURES,
        settings.client_error_log_lines_per_minute,
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
    registry = ModelRepository()
    registry.update(model)
    model.enable_latency_logging = settings.enable_latency_logging
    logger.info("Registering model: %s", model.name)
    dataplane = DataPlane(model_registry=registry)
    repository = repository_extension(
        settings.enable_model_repository, registry, model, (ModelArtifactError,)
    )
    kserve_dataplane.list_versions(dataplane, model.name, model.version)
    kserve_dataplane.list_extensions(dataplane, served_extensions(settings.enable_model_repository))
    kserve = kserve_app(
        dataplane,
        repository,
        model_name=model.name,
        max_batch_size=settings.max_batch_size,
        docs=settings.enable_docs_url,
        access_log_format=settings.access_log_format,
    )
    presence = ModelPresence(model, registry)
    admission = Admission(settings.max_inflight)  # one in-flight bound, REST's and gRPC's
    try:
        credentials = tls.server_credentials(settings.ssl_certfile, settings.ssl_keyfile)
    except tls.TlsFilesError as e:
        logger.error("Cannot serve gRPC over TLS: %s", e)
        return 2
    config = uvicorn.Config(
        create_app(settings, model, kserve, presence, admission),
        host="0.0.0.0",
        port=_http_port(settings.http_port, settings.ssl_certfile, settings.ssl_keyfile),
        http=protocol_factory(settings.limits),
        loop="none",
        lifespan="off",
        log_config=None,
        timeout_graceful_shutdown=GRACE_SECONDS,
        timeout_keep_alive=settings.timeout_keep_alive,
        ssl_certfile=settings.ssl_certfile,
        ssl_keyfile=settings.ssl_keyfile,
    )
    grpc = None
    draining: Callable[[], None] = _nothing
    if settings.enable_grpc:
        grpc_config = GrpcConfig(
            port=settings.grpc_port,
            max_threads=settings.max_threads,
            reflection=settings.enable_grpc_reflection,
            options=[
                ("grpc.max_send_message_length", settings.grpc_max_send_message_length),
                ("grpc.max_receive_message_length", settings.grpc_max_receive_message_length),
                *bounds.server_options(settings),
            ],
            tls=credentials,
        )
        services = GrpcServices(
            kserve=versioned_servicer(dataplane, repository, model.name, model.version),
            model_infer=ModelInferServicer(model, registry),
            health=V2Health(presence, settings.unloaded_liveness_seconds),
            health_v1=Health(presence, [SERVICE.full_name]),
            repository=RepositoryRpcs(repository),
            calls=Calls(admission, settings.grpc_receive_timeout_seconds),
        )
        grpc = partial(build_grpc_server, grpc_config, services)
        draining = services.health_v1.drain
    lifetime = _Lifetime(cache, model, registry, config)
    servers = Servers(
        OwnedSignalsServer(config),
        grpc,
        grace_seconds=GRACE_SECONDS,
        max_asyncio_workers=settings.max_asyncio_workers,
        starting=lifetime.starting,
        draining=draining,
        stopped=lifetime.stopped,
    )
    # Until here a stop signal's default action ends the process at once (start-up has
    # nothing to drain); from here to the loop it is recorded and honoured there.
    record_early_signals()
    with asyncio.Runner(loop_factory=_loop_factory(settings.event_loop)) as runner:
        return runner.run(servers.serve())


def _nothing() -> None:
    pass


def _http_port(port: int, certfile: str | None, keyfile: str | None) -> int:
    """kserve's rule: with TLS on and the port left at its default, serve on 8443."""
    return HTTPS_PORT if certfile and keyfile and port == HTTP_PORT else port


def _loop_factory(event_loop: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop unless told otherwise (or uvloop is missing and not asked for)."""
    if event_loop == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if event_loop == "uvloop":
            raise
        return None
    return uvloop.new_event_loop


class _Lifetime:
    """What starts before the servers listen and stops after they are done."""

    def __init__(
        self, cache: TieredCache, model: HousingModel, registry: ModelRepository, config: Any
    ) -> None:
        self._cache = cache
        self._model = model
        self._registry = registry
        self._config = config
        self._refresher: Any = None

    async def starting(self) -> None:
        """Probe the cache's Redis tier (and judge whether it pays for this model); watch
        the TLS certificate files for a renewal, as kserve's REST server does."""
        regressor = self._model.regressor if self._cache.shared else None
        seconds = None if regressor is None else model_seconds_per_row(regressor.predict)
        await self._cache.start(seconds)
        config = self._config
        config.load()
        if config.ssl is not None and config.ssl_certfile and config.ssl_keyfile:
            from kserve.protocol.rest.ssl_cert_refresher import SSLCertRefresher

            self._refresher = SSLCertRefresher(
                config.ssl, str(config.ssl_keyfile), str(config.ssl_certfile)
            )

    async def stopped(self) -> None:
        """Unload the model (requests in flight are done by now), close the cache."""
        if self._refresher is not None:
            self._refresher.stop()
        for name in list(self._registry.get_models()):
            self._registry.unload(name)
        await self._cache.close()


if __name__ == "__main__":
    sys.exit(main())
