"""Sample a running server with py-spy and keep the top of the profile as text.

Used by `perf/bench.py` when a target is missed: the profile says where the time goes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Final

TOP: Final = 25
RATE_HZ: Final = 250
UBIQUITOUS: Final = 0.9


def py_spy() -> str | None:
    return shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))


def start_recording(pid: int, seconds: float, raw_path: Path) -> subprocess.Popen[bytes]:
    """Start `py-spy record` on `pid` for `seconds` (collapsed stacks into `raw_path`)."""
    executable = py_spy()
    if executable is None:
        raise FileNotFoundError("py-spy not found: pip install -e '.[perf]'")
    command = [executable, "record", "--pid", str(pid), "--duration", f"{seconds:.0f}"]
    command += ["--rate", str(RATE_HZ), "--format", "raw", "--output", str(raw_path)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _function(frame: str) -> str:
    """`func (path/file.py:123)` → `func (path/file.py)`: one entry per function."""
    return re.sub(r":\d+\)$", ")", frame)


@dataclass(frozen=True)
class Profile:
    """Where a server spent its samples: top functions by own time and including callees."""

    samples: int
    own: list[tuple[str, int]]
    inclusive: list[tuple[str, int]]

    def share(self, count: int) -> float:
        return 100 * count / max(self.samples, 1)

    def headline(self, functions: int = 3) -> str:
        """The top functions by own time, e.g. `f (file.py) 37%, g (other.py) 6%`."""
        return ", ".join(f"{f} {self.share(n):.0f}%" for f, n in self.own[:functions])

    def render(self, title: str) -> str:
        lines = [f"# {title}", f"# {self.samples} samples at {RATE_HZ} Hz (py-spy, --format raw)"]
        for heading, top in (("own time", self.own), ("time including callees", self.inclusive)):
            lines += ["", f"## top {TOP} functions by {heading}"]
            lines += [f"{self.share(n):5.1f}%  {f}" for f, n in top]
        return "\n".join(lines) + "\n"


def summarize(raw_path: Path) -> Profile:
    """Read py-spy's collapsed stacks.

    Frames on nearly every stack (the event loop, the server's main) say nothing and are
    left out of the functions by time including callees.
    """
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw_path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count, frames = int(count_text), [_function(f) for f in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    below_root = Counter({f: n for f, n in inclusive.items() if n < UBIQUITOUS * total})
    return Profile(total, own.most_common(TOP), below_root.most_common(TOP))
