"""docs/development.md's layout table names every module of predictor/, and only real ones."""

from __future__ import annotations

import re

from harness.paths import REPO

PACKAGE = REPO / "predictor"


def documented() -> set[str]:
    text = (REPO / "docs" / "development.md").read_text()
    table = text[text.index("**Layout.**") : text.index("Tests are in `tests/`")]
    first_cells = (line.split("|")[1] for line in table.splitlines() if line.startswith("| `"))
    return {name for cell in first_cells for name in re.findall(r"`([\w/]+\.py)`", cell)}


def test_every_module_is_in_the_layout_table() -> None:
    modules = {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.name != "__init__.py"
    }
    named = documented()
    assert modules - named == set(), "modules the table does not name"
    assert named - modules == set(), "the table names modules that do not exist"
