"""Rewrite the reference table of docs/settings.md from predictor.settings.

`.venv/bin/python scripts/settings_doc.py` rewrites the part between the markers;
`--check` only says whether it is current (tests/test_settings.py checks it too).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from predictor.settings import GROUPS, Settings
from predictor.settings_cli import env_names, flag_of, shown_default

DOC = Path(__file__).resolve().parent.parent / "docs" / "settings.md"
BEGIN = "<!-- settings:begin (scripts/settings_doc.py writes this part) -->"
END = "<!-- settings:end -->"


def reference() -> str:
    """One table per group: flag, environment variables, default, what it does."""
    parts = []
    for group, title in GROUPS.items():
        parts += [f"### {title}", "", "| flag | environment | default | |", "|---|---|---|---|"]
        for name, info in Settings.model_fields.items():
            extra = info.json_schema_extra
            assert isinstance(extra, dict)
            if extra["group"] != group:
                continue
            flag = f"`{flag_of(name)}`" if extra["cli"] else "(environment only)"
            variables = ", ".join(f"`{variable}`" for variable in env_names(name))
            default = "required" if info.is_required() else f"`{shown_default(name)}`"
            text = str(info.description).replace("|", "\\|")
            parts.append(f"| {flag} | {variables} | {default} | {text} |")
        parts.append("")
    return "\n".join(parts)


def rewritten(text: str) -> str:
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    if not rest:
        raise SystemExit(f"{DOC}: no {BEGIN!r} marker")
    return f"{head}{BEGIN}\n\n{reference()}\n{END}{tail}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="Only check; exit 1 if stale.")
    args = parser.parse_args(argv)
    current = DOC.read_text()
    wanted = rewritten(current)
    if args.check:
        if wanted != current:
            print(f"{DOC} is stale: run .venv/bin/python scripts/settings_doc.py")
            return 1
        return 0
    DOC.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
