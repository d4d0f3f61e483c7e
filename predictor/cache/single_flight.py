"""Single flight: concurrent requests for the same keys share one computation.

A key whose value is already being computed for another caller waits for that run
instead of starting its own, so N concurrent identical misses compute once. Runs are
shielded: a cancelled caller does not cancel a run that others wait for, and a run's
error reaches every caller waiting on it. A run is forgotten as soon as it ends, so a
failed one is retried by the next caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """Runs in flight, by key. Used from the event loop only (not thread-safe)."""

    def __init__(self) -> None:
        # Each key being computed → (its run, its index in the run's answer).
        self._flights: dict[K, tuple[asyncio.Task[Sequence[V]], int]] = {}

    def __len__(self) -> int:
        return len(self._flights)

    async def get(
        self, keys: Sequence[K], compute: Callable[[list[int]], Awaitable[Sequence[V]]]
    ) -> tuple[list[V], int]:
        """The value of each key (duplicates allowed), and how many keys joined a run.

        `compute(positions)` gets the position in `keys` of the first occurrence of each
        distinct key that no run is computing yet, and answers one value per position, in
        order. It runs at most once per call.
        """
        new: dict[K, int] = {}
        for position, key in enumerate(keys):
            if key not in self._flights:
                new.setdefault(key, position)
        if new:
            distinct = list(new)
            run = asyncio.ensure_future(compute(list(new.values())))
            for index, key in enumerate(distinct):
                self._flights[key] = (run, index)
            run.add_done_callback(lambda _: self._land(distinct))
        groups: dict[asyncio.Task[Sequence[V]], list[tuple[int, int]]] = {}
        for position, key in enumerate(keys):
            flight, index = self._flights[key]
            groups.setdefault(flight, []).append((position, index))
        values: list[V] = [None] * len(keys)  # type: ignore[list-item]  # all filled below
        for flight, places in groups.items():
            answer = await asyncio.shield(flight)
            for position, index in places:
                values[position] = answer[index]
        return values, len(keys) - len(new)

    def _land(self, keys: list[K]) -> None:
        for key in keys:
            del self._flights[key]
