"""Nothing outside predictor/upstream/ bends another project's internals.

Read from the code itself (its syntax tree), module by module: a private attribute the
module does not set itself, an assignment into an imported module or class, or
a subclass of a third-party class other than the extension points those projects document
for it. Each hit names the file and line; a bend belongs in predictor/upstream/, beside a
check of the upstream behaviour it relies on.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from harness.paths import REPO

PACKAGE = REPO / "predictor"
THIRD_PARTY = (
    "kserve", "starlette", "fastapi", "uvicorn", "grpc", "grpc_interceptor",
    "grpc_reflection", "grpc_health", "prometheus_client", "httptools", "h11", "redis",
    "google", "pydantic", "pydantic_settings", "sklearn", "numpy", "shap", "orjson",
)  # fmt: skip
# Classes their projects mean to be subclassed: kserve's custom-model base, a custom
# Prometheus collector, pydantic models and settings sources, exception classes, and the
# servicer bases that gRPC generates for each service.
EXTENSION_POINTS = {
    "kserve.Model",
    "prometheus_client.registry.Collector",
    "pydantic.BaseModel",
    "pydantic_settings.BaseSettings",
    "pydantic_settings.PydanticBaseSettingsSource",
}

# A named tuple's public methods carry an underscore so as not to clash with field names.
NAMEDTUPLE_API = {"_replace", "_asdict", "_fields", "_make"}


def modules() -> list[Path]:
    upstream = PACKAGE / "upstream"
    return sorted(p for p in PACKAGE.rglob("*.py") if upstream not in p.parents)


def imported(tree: ast.Module) -> dict[str, str]:
    """Local name -> dotted origin, for third-party imports."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in THIRD_PARTY:
                    names[(alias.asname or alias.name).split(".")[0]] = alias.name
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.level == 0
            and node.module.split(".")[0] in THIRD_PARTY
        ):
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def root_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def bends(text: str, where: str) -> list[str]:
    tree = ast.parse(text, where)
    foreign = imported(tree)
    own = {  # private names this module gives its own objects
        target.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign | ast.AnnAssign)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Attribute)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            private = node.attr.startswith("_") and not node.attr.startswith("__")
            private = private and node.attr not in NAMEDTUPLE_API and node.attr not in own
            if private and root_name(node.value) not in ("self", "cls"):
                found.append(f"{where}:{node.lineno}: private attribute .{node.attr}")
        if isinstance(node, ast.Assign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Attribute) and root_name(target) in foreign:
                    found.append(f"{where}:{node.lineno}: assigns into {root_name(target)}")
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                origin = foreign.get(root_name(base) or "")
                if origin is None:
                    continue
                if isinstance(base, ast.Attribute):
                    origin = origin + ast.unparse(base)[len(root_name(base) or "") :]
                if origin in EXTENSION_POINTS or origin.endswith(("Error", "Exception")):
                    continue
                if "_pb2_grpc." in origin and origin.endswith("Servicer"):
                    continue  # a generated gRPC service base, meant to be implemented
                found.append(f"{where}:{node.lineno}: {node.name} subclasses {origin}")
    return found


def test_the_walk_sees_each_kind_of_bend() -> None:
    sample = (PACKAGE / "upstream" / "uvicorn_server.py").read_text()
    sample += "\nuvicorn.Server.serve = None\nx = uvicorn.Server._serve\n"
    found = "\n".join(bends(sample, "sample.py"))
    assert "subclasses uvicorn.Server" in found
    assert "assigns into uvicorn" in found
    assert "private attribute ._serve" in found


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_bend_outside_upstream(path: Path) -> None:
    assert bends(path.read_text(), str(path.relative_to(REPO))) == []
