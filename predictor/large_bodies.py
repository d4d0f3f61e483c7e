"""Large request bodies are decoded and checked in worker threads, not on the event loop.

A few clients sending 2 MB V2 bodies whose data does not match their shape kept the event
loop busy for tens of milliseconds per body (strict JSON parse, kserve's pydantic parse of
every number, NumPy's conversion) before each ended in a 400, and everyone else's requests
waited behind them. Bodies above `--offload_body_bytes` are therefore parsed and checked
here, in a dedicated one-thread pool: the outline (predictor.asgi), and what a body of that
size can get wrong (too many rows, a tensor whose data does not fill its shape, values that
are not numbers) before kserve parses it again. What passes is at most `max_batch_size`
rows of numbers, cheap for kserve. The pool is separate from the default executor, so
hostile bodies queue among themselves and never delay large model batches.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, TypeVar

from predictor.model import v1_instances

T = TypeVar("T")

# One thread: parsing holds the GIL, so more threads would not parse more bodies at once,
# only take more of the GIL from the event loop (which then still gets at least half).
_POOL: Final = ThreadPoolExecutor(max_workers=1, thread_name_prefix="large-body")


async def off_loop(work: Callable[..., T], *args: Any) -> T:
    """`work(*args)` in the large-body pool."""
    return await asyncio.get_running_loop().run_in_executor(_POOL, work, *args)


def size_problem(path: str, body: Any, max_rows: int) -> str | None:
    """What is wrong with the size or the numbers of an outline-checked V1 or V2 body."""
    if path.endswith(":predict"):
        rows = len(v1_instances(body) or ())
        return f"{rows} rows exceed max_batch_size {max_rows}" if rows > max_rows else None
    for index, tensor in enumerate(body["inputs"]):
        shape: list[int] = tensor["shape"]
        if shape and shape[0] > max_rows:
            return f"{shape[0]} rows exceed max_batch_size {max_rows}"
        data = tensor.get("data")
        if not isinstance(data, list):  # sent in binary (the extension): sized by its header
            continue
        needed = math.prod(shape)
        # Flat (`needed` numbers) or one list per row: decided by its length alone, so a
        # body far larger than its shape is refused without a walk over its values.
        if len(data) not in (needed, shape[0] if shape else 1):
            return f"inputs[{index}].data holds {len(data)} items, shape {shape} needs {needed}"
        values = _count_numbers(data)
        if values is None:
            return f"inputs[{index}].data must hold numbers only"
        if values != needed:
            return f"inputs[{index}].data holds {values} values, shape {shape} needs {needed}"
    return None


def _count_numbers(data: list[Any]) -> int | None:
    """How many numbers a (nested) JSON list holds; None if anything else is in it.

    Iterative: JSON nesting is as deep as the parser allows, deeper than Python's stack."""
    total = 0
    pending = [data]
    while pending:
        for item in pending.pop():
            if isinstance(item, list):
                pending.append(item)
            elif isinstance(item, bool) or not isinstance(item, int | float):
                return None
            else:
                total += 1
    return total
