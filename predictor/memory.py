"""Give large freed buffers back to the operating system at once (glibc's malloc).

glibc serves allocations above its mmap threshold (128 KiB) with their own mappings,
returned to the system when freed; but the first time such a block is freed, it raises
the threshold to that block's size (up to 32 MiB), and from then on blocks that size
come from the heap, where a freed one stays in the process. Bodies and answers of a few
MB (clients echoing a 2 MB V2 `id`) then kept the server's RSS hundreds of MB high after
the clients had gone. Fixing the threshold keeps every block above it a mapping of its
own. Requests and answers of ordinary size stay far below it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Final

_M_MMAP_THRESHOLD: Final = -3  # glibc's mallopt parameter number
MMAP_THRESHOLD_BYTES: Final = 256 * 1024


def return_large_blocks(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold; False where the C library is not glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold))
