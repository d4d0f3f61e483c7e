"""`python -m predictor --model_dir DIR [kserve flags] [our flags]`: load the model and serve it."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from predictor.artifact import ModelArtifactError


def main(argv: Sequence[str] | None = None) -> int:
    # kserve parses sys.argv when kserve.model_server is imported; import it here, in main.
    import kserve
    from kserve.logging import logger

    from predictor import limits
    from predictor.cache import LocalCache
    from predictor.model import HousingModel
    from predictor.routes import legacy_predict_route
    from predictor.settings import parse_settings

    settings = parse_settings(kserve.model_server.parser, argv, os.environ)
    if settings.server["workers"] != 1:
        # Extra worker processes re-import kserve's app and would lack the /predict route;
        # scale with replicas (Knative) instead.
        raise SystemExit("--workers must be 1: scale out with replicas instead")
    cache = LocalCache(settings.cache.local_max_entries, settings.cache.local_ttl_seconds)
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
    server.start([model])
    return 0


if __name__ == "__main__":
    sys.exit(main())
