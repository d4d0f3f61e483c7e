"""Dependencies: bounded in setup.cfg, pinned in constraints.txt (what the image ships) and
constraints-dev.txt (the test, lint and perf tools), and everything installs with the pins."""

from __future__ import annotations

import ast
import configparser
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Final

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from harness.paths import REPO

RUNTIME_PINS: Final = "constraints.txt"
DEV_PINS: Final = "constraints-dev.txt"
EXTRAS: Final = ("tests", "dev", "perf")

# Distributions whose internals the project bends (subclasses, patches, private attributes),
# by the name the code imports: each is bounded in setup.cfg to the minor the pins hold.
BENT: Final = {
    "kserve": "kserve",  # upstream/kserve_*.py: data plane, servicer, repository extension
    "grpc": "grpcio",  # upstream/grpc_errors.py: ExecuteBatchError, from its Cython module
    "uvicorn": "uvicorn",  # upstream/uvicorn_protocol.py and uvicorn_server.py subclass it
    "httptools": "httptools",  # the parser that protocol drives and whose errors it maps
    "prometheus_client": "prometheus-client",  # upstream/prometheus_histogram.py: _buckets
    "sklearn": "scikit-learn",  # upstream/sklearn_hgb.py reads _predictors
}
# What else predictor/upstream/ imports, for public names only (not bent, not bounded here).
PUBLIC_ONLY: Final = {
    "google.protobuf": "protobuf",  # DecodeError, and kserve's generated messages' parsing
    "grpc_interceptor": "grpc-interceptor",  # its status exceptions
    "orjson": "orjson",  # the JSON of the protocol's own refusals
    "numpy": "numpy",  # upstream/sklearn_hgb.py: the trees' node arrays
    "starlette": "starlette",  # ASGI types
}


def setup_cfg() -> configparser.ConfigParser:
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    return config


def requirements(value: str) -> list[Requirement]:
    return [Requirement(line.strip()) for line in value.strip().splitlines() if line.strip()]


def install_requires() -> list[Requirement]:
    return requirements(setup_cfg()["options"]["install_requires"])


def extras_require() -> dict[str, list[Requirement]]:
    section = setup_cfg()["options.extras_require"]
    return {extra: requirements(section[extra]) for extra in section}


def pins(name: str) -> dict[str, Version]:
    found: dict[str, Version] = {}
    for line in (REPO / name).read_text().splitlines():
        package, _, version = line.partition("==")
        assert version, f"{name}: {line!r} is not an exact pin"
        found[canonicalize_name(package)] = Version(version)
    return found


def test_every_runtime_dependency_has_lower_and_upper_bounds() -> None:
    for requirement in install_requires():
        operators = {spec.operator for spec in requirement.specifier}
        assert operators & {">=", ">", "~=", "=="}, f"{requirement} has no lower bound"
        assert operators & {"<", "<=", "~=", "=="}, f"{requirement} has no upper bound"


def test_constraints_pin_every_runtime_dependency_within_its_bounds() -> None:
    """The image installs with constraints.txt alone: every runtime dependency is there."""
    pinned = pins(RUNTIME_PINS)
    for requirement in install_requires():
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement.name} is not pinned in {RUNTIME_PINS}"
        assert requirement.specifier.contains(pinned[name]), (requirement, pinned[name])
        for extra in requirement.extras:  # e.g. redis[hiredis] pulls hiredis
            assert canonicalize_name(extra) in pinned, f"{extra} not pinned"


def test_every_tool_of_the_extras_is_pinned_within_its_bounds() -> None:
    runtime, dev = pins(RUNTIME_PINS), pins(DEV_PINS)
    assert not runtime.keys() & dev.keys(), "pinned twice: the two files could disagree"
    pinned = runtime | dev
    extras = extras_require()
    assert set(EXTRAS) <= extras.keys()
    for extra, listed in extras.items():
        for requirement in listed:
            name = canonicalize_name(requirement.name)
            assert name in pinned, f"[{extra}] {requirement.name} is pinned in neither file"
            assert requirement.specifier.contains(pinned[name]), (requirement, pinned[name])


def next_minor(version: Version) -> Version:
    return Version(f"{version.major}.{version.minor + 1}")


def test_every_bent_distribution_is_bounded_to_the_pinned_minor() -> None:
    """A new minor of a package whose internals the project bends is taken on purpose (a
    bump of the bounds and pins, tried with `make test-latest` first), never by a resolve."""
    required = {canonicalize_name(r.name): r for r in install_requires()}
    pinned = pins(RUNTIME_PINS)
    for distribution in BENT.values():
        name = canonicalize_name(distribution)
        assert name in required, f"{distribution} is bent but not bounded in setup.cfg"
        specifier = required[name].specifier
        pin = pinned[name]
        assert specifier.contains(pin), (specifier, pin)
        assert not specifier.contains(next_minor(pin)), f"{distribution}: {specifier}"
        lowest = Version(f"{pin.major}.{pin.minor}")
        assert all(
            spec.operator not in {">=", ">"} or Version(spec.version) >= lowest
            for spec in specifier
        ), f"{distribution}: {specifier} reaches below {lowest}, which nothing tests"


def upstream_imports() -> set[str]:
    """The modules predictor/upstream/ imports from other projects."""
    modules = set()
    for path in (REPO / "predictor" / "upstream").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module)
    ours = {"predictor", "__future__", *sys.stdlib_module_names}
    return {module for module in modules if module.partition(".")[0] not in ours}


def test_every_package_the_upstream_seam_imports_is_classified() -> None:
    """A new import in predictor/upstream/ is a decision: bent (bounded) or public only."""
    known = (*BENT, *PUBLIC_ONLY)
    imported = upstream_imports()
    assert {"kserve", "uvicorn", "grpc"} <= {module.partition(".")[0] for module in imported}
    for module in imported:
        assert any(module == k or module.startswith(f"{k}.") for k in known), (
            f"predictor/upstream/ imports {module}: add its distribution to BENT (and bound "
            "it in setup.cfg) or to PUBLIC_ONLY"
        )


def make_dry_run(*arguments: str) -> str:
    """What `make` would run (printed, not run; a recursive make prints its own)."""
    return subprocess.run(
        ["make", "--no-print-directory", "-n", *arguments],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def pip_installs(commands: str) -> list[list[str]]:
    """The `pip install` commands of `commands`, bar the upgrade of pip itself."""
    found = [shlex.split(line) for line in commands.splitlines() if "pip install" in line]
    return [words for words in found if words[-2:] != ["--upgrade", "pip"]]


def constraint_files(words: list[str]) -> list[str]:
    return [words[i + 1] for i, word in enumerate(words[:-1]) if word in {"-c", "--constraint"}]


@pytest.mark.skipif(shutil.which("make") is None, reason="no make (.ci/run installs it)")
def test_make_installs_the_project_and_its_tools_with_the_pins(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    targets = [f"{venv}/.installed-runtime", f"{venv}/.installed-dev", f"{venv}/.installed-perf"]
    installs = pip_installs(make_dry_run("-B", f"VENV={venv}", *targets))
    assert len(installs) == 3, installs
    for words in installs:
        wants_extras = any(word.startswith(".[") for word in words)
        expected = [RUNTIME_PINS, DEV_PINS] if wants_extras else [RUNTIME_PINS]
        assert constraint_files(words) == expected, shlex.join(words)
        assert "--upgrade" not in words, shlex.join(words)
    # A new pin reinstalls: the stamps depend on the constraint files.
    makefile = (REPO / "Makefile").read_text()
    for stamp, needs in (("RUNTIME", RUNTIME_PINS), ("DEV", DEV_PINS), ("PERF", DEV_PINS)):
        [rule] = re.findall(rf"^\$\({stamp}_STAMP\):(.*)$", makefile, re.M)
        assert needs in rule.split(), f"$({stamp}_STAMP) does not depend on {needs}"


@pytest.mark.skipif(shutil.which("make") is None, reason="no make (.ci/run installs it)")
def test_make_test_latest_runs_the_suite_on_the_newest_versions_allowed() -> None:
    commands = make_dry_run("-B", "test-latest")  # -B: as if .venv-latest were not there
    installs = pip_installs(commands)
    assert any(".[tests,dev]" in words for words in installs), installs
    for words in installs:
        assert words[0] == ".venv-latest/bin/python", shlex.join(words)
        assert not constraint_files(words), shlex.join(words)
        assert "--upgrade" in words and "eager" in words, shlex.join(words)
    # pip reads PIP_* from the environment, and make puts command-line variables there.
    assert not re.search(r"\bPIP_[A-Z_]+=", commands)
    for step in ("ruff check", "ruff format --check", "mypy", "python -m pytest"):
        assert f".venv-latest/bin/{step}" in commands, step
    assert '[ -n "1" ]' in commands, "SKIP_IMAGE_TEST=1: the container test is left out"


def test_constraints_target_pins_runtime_and_tools_apart() -> None:
    """`make constraints` writes both files from one fresh venv: the runtime set first (the
    image's), then the extras resolved with those runtime pins held."""
    makefile = (REPO / "Makefile").read_text()
    recipe = re.search(r"^constraints:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe, "no constraints target"
    lines = recipe.group(1)
    assert f"> {RUNTIME_PINS}" in lines and f"> {DEV_PINS}" in lines
    extras = ",".join(EXTRAS)
    assert f"-c {RUNTIME_PINS} '.[{extras}]'" in lines


def test_ci_and_the_image_install_with_the_pins() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M), ".ci/run runs make test"
    for line in ci.splitlines():
        if "pip install" in line and not line.lstrip().startswith("#"):
            words = shlex.split(line)[shlex.split(line).index("install") + 1 :]
            values = {i + 1 for i, word in enumerate(words) if word in {"--target", "-t"}}
            named = [w for i, w in enumerate(words) if i not in values and w[0] != "-"]
            assert named and all("==" in w for w in named), f".ci/run installs unpinned: {line}"
    dockerfile = (REPO / "Dockerfile").read_text()
    assert f"--constraint {RUNTIME_PINS} ." in dockerfile
    assert DEV_PINS not in dockerfile, "the image ships the runtime pins only"


def test_every_folder_of_python_modules_is_a_package_setup_cfg_installs() -> None:
    """A folder without `__init__.py` works from the checkout (a namespace package) but is
    left out of a non-editable install: the server image would die on its import."""
    from setuptools import find_packages

    include = setup_cfg()["options.packages.find"]["include"].split()
    installed = set(find_packages(str(REPO), include=include))
    tops = [pattern.rstrip("*") for pattern in include]
    assert {"predictor", "harness", "planner"} <= set(tops)
    for top in tops:
        for folder in [REPO / top, *(REPO / top).rglob("*")]:
            if folder.is_dir() and folder.name != "__pycache__" and any(folder.glob("*.py")):
                name = ".".join(folder.relative_to(REPO).parts)
                assert name in installed, f"{name} has no __init__.py: not installed"
