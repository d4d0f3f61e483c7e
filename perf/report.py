"""Results files: the machine they were measured on, JSON + markdown, and the docs' tables.

`write_results` writes `<kind>-<UTC stamp>.{json,md}` into the results directory: the
ignored `perf/results/` unless the run is kept (`--curate`, into the committed
`docs/results/`). `splice` replaces the text between `<!-- perf:NAME:begin -->` and
`<!-- perf:NAME:end -->` in a markdown file (only with `--update-docs`), so the docs show
the tables of a kept run and nobody types a number in.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Final

from harness.payloads import REPO


@dataclass(frozen=True)
class Written:
    json_path: Path
    md_path: Path


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


def _first_match(path: str, pattern: str) -> str:
    try:
        text = Path(path).read_text()
    except OSError:
        return "unknown"
    found = re.search(pattern, text, re.MULTILINE)
    return found.group(1).strip() if found else "unknown"


def _git_commit() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip()

    commit = git("rev-parse", "--short=12", "HEAD") or "unknown"
    return commit + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, Any]:
    """What the numbers were measured on, and how busy the machine was when they started."""
    memory_kib = _first_match("/proc/meminfo", r"^MemTotal:\s+(\d+)")
    return {
        "cpu": _first_match("/proc/cpuinfo", r"^model name\s*:\s*(.+)$"),
        "cores": os.cpu_count(),
        "memory_gib": round(int(memory_kib) / 2**20, 1) if memory_kib.isdigit() else None,
        "os": _first_match("/etc/os-release", r'^PRETTY_NAME="?([^"\n]+)'),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "git_commit": _git_commit(),
        "packages": {p: _version(p) for p in ("kserve", "uvicorn", "scikit-learn", "numpy")},
    }


def machine_line(info: dict[str, Any]) -> str:
    load = ", ".join(str(x) for x in info["load_average_1_5_15"])
    return (
        f"{info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB, {info['os']}, "
        f"Python {info['python']}; load average at start {load}; commit {info['git_commit']}"
    )


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table; floats with 3 significant digits, None as n/a."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return str(value)


def write_results(out_dir: Path, name: str, data: dict[str, Any], markdown: str) -> Written:
    """`out_dir/NAME.json` and `out_dir/NAME.md` (NAME such as `bench-<stamp>`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    base = out_dir / name
    written = Written(base.with_suffix(".json"), base.with_suffix(".md"))
    written.json_path.write_text(json.dumps(data, indent=2) + "\n")
    written.md_path.write_text(markdown.rstrip() + "\n")
    return written


def splice(doc: Path, name: str, content: str) -> None:
    """Replace the marked section `name` of `doc` with `content`."""
    begin, end = f"<!-- perf:{name}:begin -->", f"<!-- perf:{name}:end -->"
    text = doc.read_text()
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"{doc} has no {begin} ... {end} section")
    doc.write_text(pattern.sub(lambda _: f"{begin}\n{content.strip()}\n{end}", text))


def relpath(target: Path, doc: Path) -> str:
    """The path of `target` as seen from `doc`'s directory (for links in markdown)."""
    return os.path.relpath(target.resolve(), doc.resolve().parent)


def link(target: Path, doc: Path) -> str:
    return f"[{target.name}]({relpath(target, doc)})"


RESULTS: Final = REPO / "perf" / "results"
"""Where runs write by default: ignored by git, emptied by `make clean`."""
CURATED: Final = REPO / "docs" / "results"
"""The committed reports the docs cite, written there only with `--curate` or `--update-docs`."""
PERF_DOC: Final = REPO / "docs" / "performance.md"
"""The page whose `perf:NAME` sections `--update-docs` rewrites."""


def tool_parser(
    module: str, description: str, work_help: str, doc_section: str | None = None
) -> argparse.ArgumentParser:
    """The flags every perf tool shares: the model, where results and scratch files go.

    With `doc_section`, also `--update-docs` and `--doc`: the run's tables replace that
    section of the docs page.
    """
    parser = argparse.ArgumentParser(
        prog=f".venv/bin/python -m perf.{module}",
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model_dir", type=Path, required=True, help="Trained model dir.")
    parser.add_argument(
        "--out",
        type=Path,
        help=f"Results directory (default: {RESULTS.relative_to(REPO)}/, ignored by git; "
        f"with --curate or --update-docs: {CURATED.relative_to(REPO)}/, committed).",
    )
    parser.add_argument("--work_dir", type=Path, default=RESULTS / "tmp", help=work_help)
    parser.add_argument(
        "--curate",
        action="store_true",
        help=f"Keep this run: write its report into {CURATED.relative_to(REPO)}/ for the docs "
        "to cite (refused with --quick).",
    )
    if doc_section is not None:
        parser.add_argument(
            "--update-docs",
            action="store_true",
            help=f"Also replace the perf:{doc_section} section of --doc with this run's tables "
            "(implies --curate; refused with --quick).",
        )
        parser.add_argument(
            "--doc", type=Path, default=PERF_DOC, help="The page --update-docs rewrites."
        )
    return parser


def resolve_outputs(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse to keep smoke runs, and pick the results directory.

    A `--quick` run measures for seconds: its numbers are never written where the docs
    cite them.
    """
    update_docs = getattr(args, "update_docs", False)
    if args.quick and (args.curate or update_docs):
        flag = "--update-docs" if update_docs else "--curate"
        parser.error(f"{flag} is refused with --quick: smoke-run numbers stay out of the docs")
    if update_docs and args.out is not None and args.out.resolve() != CURATED:
        parser.error(f"--update-docs keeps the report in {CURATED.relative_to(REPO)}/: no --out")
    args.curate = args.curate or update_docs
    if args.out is None:
        args.out = CURATED if args.curate else RESULTS


def make_dirs(*directories: Path) -> None:
    for directory in directories:
        directory.mkdir(parents=True, exist_ok=True)


def command_line(module: str, argv: Sequence[str]) -> str:
    """The command as a reader would type it in the checkout, for the report."""
    return shlex.join([".venv/bin/python", "-m", f"perf.{module}", *argv])
