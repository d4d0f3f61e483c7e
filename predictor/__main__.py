"""`python -m predictor --model_dir DIR [kserve flags] [our flags]`: load the model and serve it."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

from predictor.artifact import ModelArtifactError
from predictor.cache import TieredCache, build_cache


def main(argv: Sequence[str] | None = None) -> int:
    # kserve parses sys.argv when kserve.model_server is imported; import it here, in main.
    import kserve
    from kserve.logging import logger

    from predictor import limits
    from predictor.model import HousingModel
    from predictor.routes import legacy_predict_route
    from predictor.settings import parse_settings

    settings = parse_settings(kserve.model_server.parser, argv, os.environ)
    if settings.server["workers"] != 1:
        # Extra worker processes re-import kserve's app and would lack the /predict route;
        # scale with replicas (Knative) instead.
        raise SystemExit("--workers must be 1: scale out with replicas instead")
    cache = build_cache(settings.cache)
    model = HousingModel(
        settings.model_name,
        settings.model_dir,
        cache,
        max_batch_size=settings.max_batch_size,
        key_prefix=settings.cache.key_prefix,
    )
    server = kserve.ModelServer(**settings.server)  # also configures logging
    try:
        model.load()
    except ModelArtifactError as e:
        logger.error("Cannot load model: %s", e)
        return 2
    # One line per request is too much at this request rate; errors are still logged.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    app = kserve.model_server.app
    app.router.routes.append(legacy_predict_route(model))
    limits.install(app, settings.max_body_bytes)
    _tie_to_lifespan(cache, app)
    server.start([model])
    return 0


def _tie_to_lifespan(cache: TieredCache, app: Any) -> None:
    """Probe the cache's Redis tier once the event loop runs; close it when the server stops."""
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Any]:
        await cache.start()
        async with inner(app) as state:
            yield state
        await cache.close()

    app.router.lifespan_context = lifespan


if __name__ == "__main__":
    sys.exit(main())
