"""pytest plugin: a test that needs a missing system program is skipped with how to get it.

`harness.system_tools.require_tool` raises `MissingToolError`; here that becomes a skip,
except under CI (`CI` set, as `.ci/run` is run), where it stays a failure: CI installs every
tool, and a skip there would hide it. Loaded by tests/conftest.py.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

from harness.system_tools import MissingToolError


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if (
        call.excinfo is not None
        and call.excinfo.errisinstance(MissingToolError)
        and not os.environ.get("CI")
    ):
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0, str(call.excinfo.value))
    return report
