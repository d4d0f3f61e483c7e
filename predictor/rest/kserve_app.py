"""kserve's REST routes as a FastAPI app this project builds, from kserve's public pieces.

The routes the project does not serve itself (metadata, model readiness, `/metrics`, the
repository extension, FastAPI's `/openapi.json`) come from kserve's own registration
functions (`register_v1_endpoints`, `register_v2_endpoints`) on an app made here, with
kserve's app settings (title, ORJSON answers, no ReDoc) and three differences:

- errors answer through predictor.errors (JSON `{"error": ...}`, one short line for a
  client error) instead of kserve's handlers, which log a traceback per bad request;
- no redirect for a trailing slash: Starlette's router would answer `/v2/health/ready/`
  with a 307 whose `Location` comes from the client's `Host` header; here it is a 404;
- kserve's timing middleware (a `getrusage` call and two log lines per request) only
  when its `kserve.trace` logger would write those lines.

The project's OpenAPI document and, with `docs`, its bundled Swagger UI are added too.
"""

from __future__ import annotations

import logging
from importlib import metadata

from fastapi import FastAPI
from fastapi.responses import ORJSONResponse
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.model_repository_extension import ModelRepositoryExtension
from kserve.protocol.rest.server import PrintTimings, metrics_handler
from kserve.protocol.rest.v1_endpoints import register_v1_endpoints
from kserve.protocol.rest.v2_endpoints import register_v2_endpoints
from timing_asgi import TimingMiddleware
from timing_asgi.integrations import StarletteScopeToName

from predictor import errors
from predictor.rest.openapi import openapi_route
from predictor.rest.routes.docs import docs_routes


def kserve_app(
    dataplane: DataPlane,
    repository: ModelRepositoryExtension,
    *,
    model_name: str,
    max_batch_size: int,
    docs: bool,
    access_log_format: str | None = None,
) -> FastAPI:
    """kserve's routes for `dataplane` and `repository`, and the project's documents."""
    app = FastAPI(
        title="KServe ModelServer",
        version=metadata.version("kserve"),
        docs_url=None,
        redoc_url=None,
        default_response_class=ORJSONResponse,
        redirect_slashes=False,
        exception_handlers=errors.HANDLERS,
    )
    if docs:
        app.router.routes[:0] = docs_routes()
    app.add_api_route("/", dataplane.live)
    app.add_api_route("/metrics", metrics_handler, methods=["GET"])
    register_v1_endpoints(app, dataplane, repository)
    register_v2_endpoints(app, dataplane, repository)
    app.router.routes.append(openapi_route(model_name, max_batch_size))
    if logging.getLogger("kserve.trace").isEnabledFor(logging.INFO):
        namer = StarletteScopeToName(prefix="kserve.io", starlette_app=app)
        app.add_middleware(TimingMiddleware, client=PrintTimings(), metric_namer=namer)
    if access_log_format:
        from asgi_logger import AccessLoggerMiddleware  # kserve's optional dependency

        logging.getLogger("uvicorn.access").handlers = []
        app.add_middleware(AccessLoggerMiddleware, format=access_log_format)
        logging.getLogger("access").propagate = False
    return app
