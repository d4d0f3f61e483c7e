"""A missing system tool skips its tests with how to get it, except under CI, where it fails."""

from __future__ import annotations

import shutil

import pytest

from tests.system_tools import HOW_TO_GET, require_tool


@pytest.fixture()
def nothing_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)


@pytest.mark.usefixtures("nothing_on_path")
@pytest.mark.parametrize("tool", sorted(HOW_TO_GET))
def test_a_missing_tool_skips_with_how_to_get_it(
    tool: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception) as skipped:
        require_tool(tool, "for this test")
    assert (
        str(skipped.value)
        == f"{tool} not found on PATH, needed for this test: " + (HOW_TO_GET[tool])
    )
    assert "apt-get install" in str(skipped.value)


@pytest.mark.usefixtures("nothing_on_path")
def test_under_ci_a_missing_tool_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="kubectl not found on PATH"):
        require_tool("kubectl", "for this test")


def test_a_tool_on_path_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    assert require_tool("redis-server", "for this test") == "/usr/bin/redis-server"
