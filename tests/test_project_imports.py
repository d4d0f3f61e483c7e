"""Every import of the project's own packages resolves, function-level ones included.

mypy runs with `ignore_missing_imports` (for third-party packages without stubs), which
also lets an import of a project module that does not exist pass; this walks the code.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

from harness.paths import REPO

PROJECT = ("predictor", "harness", "planner", "perf")
TREES = (*PROJECT, "scripts", "tests")


def project_imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
    return [(line, name) for line, name in found if name.split(".")[0] in PROJECT]


def sources() -> list[Path]:
    return sorted(p for tree in TREES for p in (REPO / tree).rglob("*.py"))


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(REPO)))
def test_project_imports_resolve(path: Path) -> None:
    missing = [
        f"{path.relative_to(REPO)}:{line}: {name}"
        for line, name in project_imports(path)
        if importlib.util.find_spec(name) is None
    ]
    assert missing == []
