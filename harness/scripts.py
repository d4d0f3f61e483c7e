"""Import a script of scripts/ (not a package) by its path, for the tests of its functions."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from harness.paths import REPO


def load_script(name: str) -> ModuleType:
    """scripts/<name>.py as a module (run once per call; its `main` is not called)."""
    path = REPO / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"scripts_{name}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
