"""Every module of predictor/upstream/ states the upstream shape it bends; an upstream
release that changes it fails here, by name, instead of in production."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import predictor.upstream

# probes: what the checks themselves probe kserve with, not a bend.
MODULES = sorted(
    m.name for m in pkgutil.iter_modules(predictor.upstream.__path__) if m.name != "probes"
)
# The uvicorn protocol relies on many details: tests/test_upstream_shapes.py checks them one
# test per detail instead of one check_upstream().
CHECKED_BY_SHAPE_TESTS = {"uvicorn_protocol"}


def test_the_seam_holds_the_known_patches() -> None:
    assert {
        "kserve_dataplane",
        "kserve_grpc_servicer",
        "kserve_repository",
        "prometheus_histogram",
        "uvicorn_server",
        *CHECKED_BY_SHAPE_TESTS,
    } <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_upstream_still_has_the_shape_each_patch_relies_on(name: str) -> None:
    module = importlib.import_module(f"predictor.upstream.{name}")
    check = getattr(module, "check_upstream", None)
    if check is None and name in CHECKED_BY_SHAPE_TESTS:
        return
    assert check is not None, f"predictor.upstream.{name} states no check_upstream()"
    check()
