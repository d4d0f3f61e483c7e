"""kserve's REST server, serving the project's ASGI app in front of kserve's FastAPI app.

kserve's `ModelServer` builds a uvicorn `Config` for its module-level FastAPI app
(`kserve.model_server.app`, by import string) and registers its routes, middleware and
exception handlers on that app when the server starts. `serve_app` gives uvicorn the
project's app instead (predictor.app), before uvicorn loads its config; that app hands
what it does not serve to kserve's, which kserve still fills in as usual.

Two changes to kserve's app itself:
- no redirects for a trailing slash: Starlette's router answers `/v2/health/ready/` with
  a 307 whose `Location` is built from the client's `Host` header; here it is a 404;
- kserve's timing middleware (a `getrusage` call and two formatted log lines per request)
  is dropped while its trace logger would discard those lines anyway.
"""

from __future__ import annotations

import inspect
import logging

import uvicorn
from fastapi import FastAPI
from kserve.protocol.rest.server import RESTServer
from starlette.types import ASGIApp
from timing_asgi import TimingMiddleware
from uvicorn.importer import import_from_string

from predictor.upstream.starlette_stack import before_build


def check_upstream() -> None:
    """What this module relies on: `RESTServer.config` (a uvicorn `Config` whose `app`
    is read when the server starts), FastAPI's `router.redirect_slashes` and
    `user_middleware` entries with a `cls`."""
    assert "self.config = uvicorn.Config(" in inspect.getsource(RESTServer.__init__)
    assert "self.load_app()" in inspect.getsource(uvicorn.Config.load), "uvicorn loads .app"
    app_object = object()
    assert import_from_string(app_object) is app_object, "uvicorn takes an app object as is"
    app = FastAPI()
    assert app.router.redirect_slashes is True, "Router.redirect_slashes"
    app.add_middleware(TimingMiddleware, client=None)
    assert [m.cls for m in app.user_middleware] == [TimingMiddleware], "user_middleware"


def serve_app(rest_server: RESTServer, app: ASGIApp) -> None:
    """Have uvicorn serve `app` (call before the server starts)."""
    rest_server.config.app = app


def trim_kserve_app(app: FastAPI) -> None:
    """No trailing-slash redirects; no timing middleware while its log lines go nowhere."""
    app.router.redirect_slashes = False

    def drop_timing() -> None:
        if not logging.getLogger("kserve.trace").isEnabledFor(logging.INFO):
            app.user_middleware = [m for m in app.user_middleware if m.cls is not TimingMiddleware]

    before_build(app, drop_timing)
