"""The OpenAPI document covers every REST route the server has: the project's own
(predictor.rest.app) and kserve's app as the server builds it (its routes, plus what
predictor.rest.app adds), walked route by route."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from predictor.cache.tiers import LocalCache
from predictor.rest.openapi import openapi_document

MODEL = "housing"


def walk(routes: list[Any]) -> Iterator[tuple[str, frozenset[str]]]:
    """(path, methods) of every route, inside included routers and mounts too."""
    for route in routes:
        if hasattr(route, "original_router"):  # FastAPI's included router
            yield from walk(route.original_router.routes)
        elif getattr(route, "methods", None) is None:  # a Mount: GET its files
            yield route.path + "/{path}", frozenset({"GET"})
        else:
            yield route.path, frozenset(route.methods)


def server_route_table() -> set[tuple[str, str]]:
    """Every (method, path) the server answers (HEAD aside: every GET route takes it)."""
    from kserve.model_repository import ModelRepository
    from kserve.protocol.dataplane import DataPlane
    from kserve.protocol.model_repository_extension import ModelRepositoryExtension

    from predictor.admission import Admission
    from predictor.model.housing import HousingModel
    from predictor.model.presence import ModelPresence
    from predictor.rest.app import create_app
    from predictor.rest.kserve_app import kserve_app
    from predictor.settings_cli import parse_settings

    registry = ModelRepository()
    dataplane = DataPlane(registry)
    repository = ModelRepositoryExtension(registry)
    app = kserve_app(dataplane, repository, model_name=MODEL, max_batch_size=1000, docs=True)
    settings = parse_settings(["--model_dir", "/nowhere"])
    model = HousingModel(MODEL, Path("/nowhere"), LocalCache(10, 1.0), 1000)
    presence = ModelPresence(model, registry)
    front = create_app(settings, model, app, presence, Admission(settings.max_inflight))
    table = {(m, p) for p, methods in walk(app.router.routes) for m in methods}
    table |= {(m, p) for p, methods in front.route_table().items() for m in methods}
    return {
        (method, path.replace("{model_name}", MODEL).replace("{model_version}", "{version}"))
        for method, path in table
        if method != "HEAD"
    }


def test_every_route_of_the_server_is_in_the_document() -> None:
    document = openapi_document(MODEL)
    documented = {
        (method.upper(), path.replace("{name}", MODEL))
        for path, operations in document["paths"].items()
        for method in operations
    }
    routes = server_route_table()
    assert len(routes) > 20
    assert routes - documented == set()
