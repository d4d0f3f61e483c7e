"""Sample a running server with py-spy and keep the top of the profile as text.

Used by `perf/bench.py` when a target is missed: the profile says where the time goes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
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


def summarize(raw_path: Path, title: str) -> str:
    """Top functions by own samples and by samples including callees, as plain text.

    Frames on nearly every stack (the event loop, the server's main) say nothing and are
    left out of the second list.
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
    lines = [f"# {title}", f"# {total} samples at {RATE_HZ} Hz (py-spy record --format raw)", ""]
    for heading, counter in (("own time", own), ("time including callees", below_root)):
        lines.append(f"## top {TOP} functions by {heading}")
        lines += [f"{100 * n / max(total, 1):5.1f}%  {f}" for f, n in counter.most_common(TOP)]
        lines.append("")
    return "\n".join(lines)
