"""`SingleFlight` on its own: concurrent callers of the same keys share one run."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from predictor.cache.single_flight import SingleFlight


class Computer:
    """Answers each key as its length, after a delay; records every run's keys."""

    def __init__(self, keys: Sequence[str], delay: float = 0.01, fail: bool = False) -> None:
        self.keys = keys
        self.delay = delay
        self.fail = fail
        self.runs: list[list[str]] = []

    async def __call__(self, positions: list[int]) -> list[int]:
        run = [self.keys[p] for p in positions]
        self.runs.append(run)
        await asyncio.sleep(self.delay)
        if self.fail:
            raise RuntimeError("run failed")
        return [len(key) for key in run]


def test_overlapping_callers_compute_each_key_once() -> None:
    async def scenario() -> None:
        flights: SingleFlight[str, int] = SingleFlight()
        first = Computer(["a", "bb", "a"])
        second = Computer(["bb", "ccc"])
        (one, joined_one), (two, joined_two) = await asyncio.gather(
            flights.get(first.keys, first), flights.get(second.keys, second)
        )
        assert (one, two) == ([1, 2, 1], [2, 3])
        assert first.runs == [["a", "bb"]]  # the duplicate "a" once
        assert second.runs == [["ccc"]]  # "bb" joined the first caller's run
        assert (joined_one, joined_two) == (1, 1)
        assert len(flights) == 0  # every run landed

    asyncio.run(scenario())


def test_an_error_reaches_every_waiter_and_the_next_caller_retries() -> None:
    async def scenario() -> None:
        flights: SingleFlight[str, int] = SingleFlight()
        failing = Computer(["k"], fail=True)
        results = await asyncio.gather(
            flights.get(["k"], failing), flights.get(["k"], failing), return_exceptions=True
        )
        assert all(isinstance(r, RuntimeError) for r in results)
        assert failing.runs == [["k"]]
        retry = Computer(["k"])
        assert await flights.get(["k"], retry) == ([1], 0)

    asyncio.run(scenario())


def test_a_cancelled_caller_does_not_cancel_the_shared_run() -> None:
    async def scenario() -> None:
        flights: SingleFlight[str, int] = SingleFlight()
        slow = Computer(["key"], delay=0.05)
        starter = asyncio.create_task(flights.get(["key"], slow))
        await asyncio.sleep(0.01)
        follower = asyncio.create_task(flights.get(["key"], slow))
        await asyncio.sleep(0.01)
        starter.cancel()
        assert await follower == ([3], 1)
        with pytest.raises(asyncio.CancelledError):
            await starter
        assert slow.runs == [["key"]]

    asyncio.run(scenario())
