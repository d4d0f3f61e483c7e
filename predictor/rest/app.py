"""The ASGI app uvicorn calls: the project's routes first, then kserve's FastAPI app.

Served here, in plain ASGI, without FastAPI's routing, dependencies or pydantic:
- inference: legacy `POST /predict` and `POST /explain`, V1
  `POST /v1/models/{name}:predict` and `:explain`, V2
  `POST /v2/models/{name}[/versions/{version}]/infer` (predictor.rest.routes.*);
- `GET /health` and the truth about readiness and liveness (predictor.rest.routes.health);
- versioned V2 routes of the served version, as the unversioned ones; any other version,
  or any other model's versioned route, is a 404 (kserve answers them 501);
- HEAD on every GET route, answered like GET without the body (FastAPI's routes 405);
- a WebSocket upgrade: refused with a JSON `error` (there are no WebSocket routes).
Everything else (metadata, model readiness, metrics, the repository extension, the docs
and OpenAPI routes added to kserve's app) goes to kserve's app unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from predictor.admission import Admission
from predictor.model.housing import HousingModel
from predictor.model.presence import ModelPresence
from predictor.model.versions import UnservedVersion, unversioned_path
from predictor.rest.answers import error_answer, send_answer
from predictor.rest.routes import health, legacy, v1, v2
from predictor.rest.routes.inference import response_memo
from predictor.settings import Settings

BINARY_EXTENSION: Final = "binary_tensor_data"
REPOSITORY_EXTENSION: Final = "model_repository_extension"


def served_extensions(model_repository: bool) -> list[str]:
    """The V2 extensions this server serves, as `GET /v2` lists them."""
    return [BINARY_EXTENSION, *([REPOSITORY_EXTENSION] if model_repository else [])]


def create_app(
    settings: Settings,
    model: HousingModel,
    kserve: ASGIApp,
    presence: ModelPresence,
    admission: Admission,
) -> PredictorApp:
    """The app uvicorn serves: the project's routes in front of kserve's app; `admission`:
    the in-flight bound it shares with gRPC."""
    memo = response_memo(settings.response_cache_size, settings.cache_ttl_seconds)
    sizes = (settings.max_body_bytes, settings.offload_body_bytes)
    routes: dict[str, ASGIApp] = {
        legacy.PATH: legacy.route(model, admission, *sizes, memo),
        legacy.EXPLAIN_PATH: legacy.route(model, admission, *sizes, memo, explain=True),
        v1.path(model.name): v1.route(model, admission, *sizes, memo),
        v1.explain_path(model.name): v1.route(model, admission, *sizes, memo, explain=True),
        v2.path(model.name): v2.route(model, admission, *sizes),
        health.PATH: health.route(model),
    }
    checked = health.TruthfulHealth(
        head_as_get(kserve), presence, model.name, settings.unloaded_liveness_seconds
    )
    return PredictorApp(kserve, routes, checked, model)


class PredictorApp:
    """See the module docstring."""

    def __init__(
        self,
        kserve: ASGIApp,
        routes: Mapping[str, ASGIApp],
        health_check: health.TruthfulHealth,
        model: HousingModel,
    ) -> None:
        self._kserve = kserve
        self._kserve_gets = head_as_get(kserve)
        self._routes = dict(routes)
        for path in (health.READINESS_PATH, *health.LIVENESS_PATHS):
            self._routes[path] = health_check
        self._model = model

    def route_table(self) -> dict[str, tuple[str, ...]]:
        """The paths served here and their methods (the rest is kserve's app's table)."""
        return {path: getattr(route, "methods", ("GET",)) for path, route in self._routes.items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            route = self._routes.get(scope["path"])
            if route is not None:
                await route(scope, receive, send)
            else:
                await self._other(scope, receive, send)
        elif scope["type"] == "websocket":
            await _refuse_websocket(scope, receive, send)
        else:  # lifespan
            await self._kserve(scope, receive, send)

    async def _other(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method = scope["method"]
        if "/versions/" in path:
            try:
                scope = unversioned_path(scope, self._model.name, self._model.version)
            except UnservedVersion as e:
                await send_answer(send, error_answer(404, str(e)), head=method == "HEAD")
                return
            route = self._routes.get(scope["path"])
            if route is not None:
                await route(scope, receive, send)
                return
        await self._kserve_gets(scope, receive, send)


def head_as_get(app: ASGIApp) -> ASGIApp:
    """`app`, answering HEAD like GET without the body (Content-Length stays)."""

    async def heading(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "HEAD":
            await app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await app({**scope, "method": "GET"}, receive, without_body)

    return heading


async def _refuse_websocket(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer a WebSocket handshake with a JSON 404 where the server can (ASGI's
    `websocket.http.response` extension), else close it (the server answers 403)."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008})
        return
    answer = error_answer(404, f"no WebSocket endpoint at {scope['path']}")
    headers = [
        (b"content-type", answer.content_type),
        (b"content-length", str(len(answer.body)).encode()),
    ]
    await send({"type": "websocket.http.response.start", "status": 404, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": answer.body})
