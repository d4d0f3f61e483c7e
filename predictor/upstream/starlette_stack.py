"""Putting layers in front of kserve's FastAPI app, whose stack is built on the first request.

kserve adds its middleware, routes and exception handlers to its module-level app when the
server starts, and Starlette builds the middleware stack on the first request. Wrapping
the stack builder is how a layer ends up in front of kserve's, or changes what kserve
registered, without re-implementing kserve's ModelServer.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.types import ASGIApp


def check_upstream() -> None:
    """What this module relies on: Starlette builds its middleware stack on the first
    call, through `self.build_middleware_stack()`."""
    assert "self.build_middleware_stack()" in inspect.getsource(Starlette.__call__)


def wrap_stack(app: Any, wrap: Callable[[ASGIApp], ASGIApp]) -> None:
    """Make `wrap(stack)` the app's outermost layer; later calls wrap earlier ones."""
    build_inner: Callable[[], ASGIApp] = app.build_middleware_stack

    def build() -> ASGIApp:
        return wrap(build_inner())

    app.build_middleware_stack = build


def before_build(app: Any, hook: Callable[[], None]) -> None:
    """Run `hook` just before the stack is built: after kserve has registered everything."""
    build_inner: Callable[[], ASGIApp] = app.build_middleware_stack

    def build() -> ASGIApp:
        hook()
        return build_inner()

    app.build_middleware_stack = build
