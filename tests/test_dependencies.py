"""Dependencies: bounded in setup.cfg, pinned in constraints.txt, and the two agree."""

from __future__ import annotations

import configparser

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from harness.server import REPO


def install_requires() -> list[Requirement]:
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    lines = config["options"]["install_requires"].strip().splitlines()
    return [Requirement(line.strip()) for line in lines if line.strip()]


def pins() -> dict[str, str]:
    found = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        name, _, version = line.partition("==")
        assert version, f"constraints.txt: {line!r} is not an exact pin"
        found[canonicalize_name(name)] = version
    return found


def test_every_runtime_dependency_has_lower_and_upper_bounds() -> None:
    for requirement in install_requires():
        operators = {spec.operator for spec in requirement.specifier}
        assert operators & {">=", ">", "~=", "=="}, f"{requirement} has no lower bound"
        assert operators & {"<", "<=", "~=", "=="}, f"{requirement} has no upper bound"


def test_constraints_pin_every_runtime_dependency_within_its_bounds() -> None:
    pinned = pins()
    for requirement in install_requires():
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement.name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(pinned[name]), (requirement, pinned[name])
        for extra in requirement.extras:  # e.g. redis[hiredis] pulls hiredis
            assert any(canonicalize_name(extra) == n for n in pinned), f"{extra} not pinned"


def test_every_folder_of_python_modules_is_a_package_setup_cfg_installs() -> None:
    """A folder without `__init__.py` works from the checkout (a namespace package) but is
    left out of a non-editable install: the server image would die on its import."""
    from setuptools import find_packages

    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    include = config["options.packages.find"]["include"].split()
    installed = set(find_packages(str(REPO), include=include))
    tops = [pattern.rstrip("*") for pattern in include]
    assert {"predictor", "harness", "planner"} <= set(tops)
    for top in tops:
        for folder in [REPO / top, *(REPO / top).rglob("*")]:
            if folder.is_dir() and folder.name != "__pycache__" and any(folder.glob("*.py")):
                name = ".".join(folder.relative_to(REPO).parts)
                assert name in installed, f"{name} has no __init__.py: not installed"
