"""Every command the docs show runs as written on a fresh clone.

Walks the shell code blocks (```sh, ```bash, ```shell, ```console) of README.md and
docs/*.md, and the inline code in their prose that starts with `make `, `.venv/bin/` or
`python`, and checks each simple command:

- `make T...`: every target T is a rule of the Makefile;
- `.venv/bin/python -m M ...` and `.venv/bin/python path.py ...`: the module or script
  answers `--help` with exit 0 (run once each, in parallel); `.venv/bin/python - <<EOF`:
  the here-document compiles;
- `.venv/bin/TOOL`: a program the project's extras install into the venv;
- a plain `python ...`: refused, since it is not the project's interpreter on a fresh
  clone (write `.venv/bin/python ...`, or a `make` target);
- a command that is a path of the checkout (`scripts/x.sh`): exists and is executable;
- for every command, cluster ones included (`kubectl apply -k deploy/overlays/prod`, `curl -d
  @tests/data/sample.json`): every argument naming a path in the checkout exists, unless
  it is an output path git ignores.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final

import pytest

from harness.server import REPO

SHELL_LANGUAGES: Final = {"sh", "bash", "shell", "console", "zsh"}
FENCE: Final = re.compile(r"^```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^```", re.M | re.S)
INLINE: Final = re.compile(r"(?<!`)`([^`]+)`(?!`)")
INLINE_COMMAND: Final = re.compile(r"^(make |\.venv/bin/|python3? )")
HEREDOC: Final = re.compile(r"<<-?\s*(['\"]?)(?P<word>\w+)\1")
CONTROL: Final = {"|", "||", "&&", ";", "&", "(", ")", "{", "}", ";;"}
REDIRECT: Final = re.compile(r"^\d*[<>]+&?$")
ASSIGNMENT: Final = re.compile(r"^[A-Za-z_]\w*=")
RULE: Final = re.compile(r"^(?P<targets>[\w.%/-]+(?:[ \t]+[\w.%/-]+)*)[ \t]*::?(?!=)", re.M)
VENV_PYTHON: Final = ".venv/bin/python"
HELP_TIMEOUT_SECONDS: Final = 120
MIN_COMMANDS: Final = 30


@dataclass(frozen=True)
class Command:
    """One simple command of the docs, as its words after shell quoting."""

    where: str
    """`docs/x.md:LINE`."""
    words: tuple[str, ...]
    stdin: str | None = None
    """A here-document fed to it, if any."""

    def __str__(self) -> str:
        return f"{self.where}: {shlex.join(self.words)}"


# -- finding the commands ------------------------------------------------------------------


def doc_files(repo: Path = REPO) -> list[Path]:
    return [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]


def logical_lines(body: str, first_line: int) -> Iterator[tuple[int, str, str | None]]:
    """(line number, command line, here-document) of a shell block: continuation lines
    joined, quotes spanning lines kept together, here-document bodies taken out."""
    lines = body.splitlines()
    index = 0
    while index < len(lines):
        number, text = first_line + index, lines[index]
        index += 1
        while True:
            if text.endswith("\\") and index < len(lines):
                text = text[:-1] + " " + lines[index]
                index += 1
                continue
            try:
                shlex.split(text, comments=True)
            except ValueError:  # a quote open until a later line
                if index < len(lines):
                    text += "\n" + lines[index]
                    index += 1
                    continue
            break
        heredoc = None
        if found := HEREDOC.search(text):
            end = next(
                (i for i in range(index, len(lines)) if lines[i].strip() == found["word"]),
                len(lines),
            )
            heredoc, index = "\n".join(lines[index:end]) + "\n", end + 1
        yield number, text, heredoc


def simple_commands(text: str) -> list[list[str]]:
    """The simple commands of one command line, redirections and comments dropped."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    skip_next = False
    for token in lexer:
        if skip_next:
            skip_next = False
        elif token in CONTROL:
            commands.append([])
        elif REDIRECT.match(token):
            skip_next = True  # the file or here-document word
        else:
            commands[-1].append(token)
    return [words for words in commands if words]


def block_commands(where: str, lang: str, body: str, first_line: int) -> Iterator[Command]:
    if lang == "console":  # prompts are commands, the rest is output
        body = "\n".join(line[2:] if line.startswith("$ ") else "" for line in body.splitlines())
    for number, text, heredoc in logical_lines(body, first_line):
        for words in simple_commands(text):
            yield Command(f"{where}:{number}", tuple(words), heredoc)


def inline_commands(where: str, prose: str, first_line: int) -> Iterator[Command]:
    """Inline code that starts like a command; spans with <placeholders> are left out."""
    for found in INLINE.finditer(prose):
        span = " ".join(found.group(1).split())
        if INLINE_COMMAND.match(span) and "<" not in span:
            number = first_line + prose.count("\n", 0, found.start())
            for words in simple_commands(span):
                yield Command(f"{where}:{number}", tuple(words))


def doc_commands(path: Path, root: Path = REPO) -> list[Command]:
    text = path.read_text(encoding="utf-8")
    where = str(path.relative_to(root))
    commands: list[Command] = []
    position = 0

    def line_of(offset: int) -> int:
        return text.count("\n", 0, offset) + 1

    for block in FENCE.finditer(text):
        commands += inline_commands(where, text[position : block.start()], line_of(position))
        if block["lang"] in SHELL_LANGUAGES:
            commands += block_commands(
                where, block["lang"], block["body"], line_of(block.start()) + 1
            )
        position = block.end()
    commands += inline_commands(where, text[position:], line_of(position))
    return commands


def all_commands(repo: Path = REPO) -> list[Command]:
    return [command for path in doc_files(repo) for command in doc_commands(path, repo)]


# -- checking them -------------------------------------------------------------------------


@cache
def make_targets(repo: Path = REPO) -> frozenset[str]:
    text = (repo / "Makefile").read_text(encoding="utf-8")
    return frozenset(target for rule in RULE.finditer(text) for target in rule["targets"].split())


@cache
def top_level_entries(repo: Path = REPO) -> frozenset[str]:
    listed = subprocess.run(
        ["git", "ls-files"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout
    return frozenset(line.split("/")[0] for line in listed.splitlines())


def git_ignores(relative: str, repo: Path = REPO) -> bool:
    done = subprocess.run(["git", "check-ignore", "-q", relative], cwd=repo)
    return done.returncode == 0


def checkout_path(word: str) -> str | None:
    """The path of the checkout an argument names, if it names one: `deploy/overlays/prod`,
    `@tests/data/sample.json`, `--patch-file=knative/x.yaml`."""
    candidate = word.split("=", 1)[1] if word.startswith("-") and "=" in word else word
    candidate = candidate.removeprefix("@")
    if "/" not in candidate or "$" in candidate or "://" in candidate:
        return None
    if candidate.startswith("./"):
        candidate = candidate[2:]
    first = candidate.split("/")[0]
    return candidate if first in top_level_entries() else None


def help_invocation(command: Command) -> tuple[str, ...] | None:
    """What to run with `--help` for a `.venv/bin/python` command, if anything."""
    words = command.words
    if words[0] != VENV_PYTHON or len(words) < 2:
        return None
    if words[1] == "-m" and len(words) > 2:
        return ("-m", words[2])
    if words[1].endswith(".py"):
        return (words[1],)
    return None


def problems(command: Command, helps: dict[tuple[str, ...], str | None]) -> list[str]:
    """What is wrong with `command` on a fresh clone; empty when it runs as written."""
    words = list(command.words)
    while words and ASSIGNMENT.match(words[0]):
        words.pop(0)
    if not words:
        return []
    found: list[str] = []
    program, args = words[0], words[1:]
    if program == "make":
        targets = [a for a in args if not a.startswith("-") and not ASSIGNMENT.match(a)]
        found += [f"no Makefile target {t!r}" for t in targets if t not in make_targets()]
    elif program in ("python", "python3"):
        found.append(
            f"plain {program!r} is not the project's interpreter on a fresh clone: "
            f"write {VENV_PYTHON} ... (or a make target)"
        )
    elif program == VENV_PYTHON:
        invocation = help_invocation(Command(command.where, tuple(words)))
        if invocation is not None:
            if invocation[0].endswith(".py") and not (REPO / invocation[0]).is_file():
                found.append(f"no script {invocation[0]}")
            elif (error := helps.get(invocation)) is not None:
                found.append(f"{shlex.join([VENV_PYTHON, *invocation, '--help'])}: {error}")
        elif args[:1] == ["-"]:
            if command.stdin is None:
                found.append("reads a program from stdin, but no here-document follows")
            else:
                try:
                    compile(command.stdin, command.where, "exec")
                except SyntaxError as e:
                    found.append(f"the here-document is not valid Python: {e}")
        elif args:
            found.append(f"{VENV_PYTHON} {shlex.join(args[:1])}: neither -m MODULE nor a .py")
    elif program.startswith(".venv/bin/"):
        tool = program.removeprefix(".venv/bin/")
        if not (Path(sys.executable).parent / tool).exists():
            found.append(f"{program}: no {tool} in the venv the extras install")
    elif (path := checkout_path(program)) is not None and not os.access(REPO / path, os.X_OK):
        found.append(f"{program} is not an executable file of the checkout")
    if program == VENV_PYTHON and args[:1] and args[0].endswith(".py"):
        args = args[1:]  # the script: checked above
    for word in args:
        path = checkout_path(word)
        if path is not None and not (REPO / path).exists() and not git_ignores(path):
            found.append(f"{word}: no such file in the checkout")
    return found


def run_help(invocation: tuple[str, ...]) -> str | None:
    """None when `.venv/bin/python INVOCATION --help` exits 0, else what went wrong."""
    try:
        done = subprocess.run(
            [sys.executable, *invocation, "--help"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=HELP_TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired:
        return f"no answer in {HELP_TIMEOUT_SECONDS} s"
    if done.returncode == 0 and "usage" in done.stdout.lower():
        return None
    return f"exit {done.returncode}: {(done.stderr or done.stdout).strip()[-500:]}"


def help_answers(invocations: Sequence[tuple[str, ...]]) -> dict[tuple[str, ...], str | None]:
    distinct = sorted(set(invocations))
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(distinct, pool.map(run_help, distinct), strict=True))


COMMANDS: Final = all_commands()


@pytest.fixture(scope="module")
def helps() -> dict[tuple[str, ...], str | None]:
    """Each distinct `--help` the docs imply, run once, in parallel."""
    invocations = [i for c in COMMANDS if (i := help_invocation(c)) is not None]
    return help_answers(invocations)


@pytest.mark.parametrize("command", COMMANDS, ids=[str(c)[:90] for c in COMMANDS])
def test_documented_command_runs_as_written(
    command: Command, helps: dict[tuple[str, ...], str | None]
) -> None:
    assert not problems(command, helps), f"{command}: " + "; ".join(problems(command, helps))


# -- the checker itself --------------------------------------------------------------------


def test_the_walk_finds_the_docs_commands() -> None:
    assert len(COMMANDS) >= MIN_COMMANDS
    readme = [c.words for c in COMMANDS if c.where.startswith("README.md:")]
    assert ("make", "serve") in readme and ("make", "test") in readme
    assert any(c.words[:2] == ("kubectl", "apply") for c in COMMANDS)


def _checked(markdown: str, tmp_path: Path) -> list[str]:
    doc = tmp_path / "docs" / "page.md"
    doc.parent.mkdir()
    doc.write_text(markdown)
    commands = doc_commands(doc, tmp_path)
    helps = help_answers([i for c in commands if (i := help_invocation(c)) is not None])
    return [problem for command in commands for problem in problems(command, helps)]


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("```sh\nmake serve test\n```\n", []),
        ("```sh\nmake no-such-target\n```\n", ["no Makefile target 'no-such-target'"]),
        ("Run `python scripts/smoke.py URL`.\n", ["plain 'python'"]),
        ("```bash\nFOO=1 python -m perf.bench --help\n```\n", ["plain 'python'"]),
        ("```sh\n.venv/bin/python -m perf.no_such_tool --help\n```\n", ["No module named"]),
        ("```sh\n.venv/bin/python scripts/no_such.py\n```\n", ["no script scripts/no_such.py"]),
        (
            "```sh\nkubectl apply -k deploy/overlays/no-such\n```\n",
            ["deploy/overlays/no-such: no such file"],
        ),
        ("```sh\ncurl -d @tests/data/sample.json \\\n  http://x\n```\n", []),
        ("```sh\n.venv/bin/python - <<'EOF'\nprint(1\nEOF\n```\n", ["not valid Python"]),
        ("```console\n$ make bench\nmake nothing-here\n```\n", []),
        ("```sh\n.venv/bin/no-such-tool run\n```\n", ["no no-such-tool in the venv"]),
    ],
)
def test_the_checker_catches_what_would_fail(
    markdown: str, expected: list[str], tmp_path: Path
) -> None:
    found = _checked(markdown, tmp_path)
    assert len(found) == len(expected), found
    for problem, fragment in zip(found, expected, strict=True):
        assert fragment in problem
