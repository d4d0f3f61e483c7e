"""Single flight in `HousingModel.predict`, in-process: identical rows in flight run once.

The cache here is the in-process LRU with a delay on each lookup (a Redis round trip), so
that concurrent requests really overlap.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY

from predictor.cache.tiers import LocalCache
from predictor.model.housing import BatchResult, Decoded, HousingModel, Route
from predictor.protocol.schema import validate_objects

ROWS = [
    {"MedInc": 3.5 + i / 8, "HouseAge": 20.0, "AveRooms": 5.0, "AveBedrms": 1.0,
     "Population": 900.0 + i, "AveOccup": 2.5, "Latitude": 34.0, "Longitude": -118.0}
    for i in range(12)
]  # fmt: skip


class SlowCache(LocalCache):
    """The in-process LRU, answering each lookup after a delay."""

    shared = True  # its lookups suspend, as a shared tier's do

    def __init__(self, delay: float = 0.02) -> None:
        super().__init__(1000, 60.0)
        self.delay = delay

    async def lookup(self, keys: Sequence[str]) -> list[float | None]:
        await asyncio.sleep(self.delay)
        return self.get_many(keys)


class FailingOnce:
    """Wraps a regressor; the first call raises."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.calls = 0

    @property
    def kind(self) -> str:
        return "failing-once"

    def predict(self, rows: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("model exploded")
        result: np.ndarray = self.inner.predict(rows)  # type: ignore[attr-defined]
        return result


def rows_predicted() -> float:
    return REGISTRY.get_sample_value("housing_rows_predicted_total") or 0.0


def new_model(model_dir: Path, cache: LocalCache) -> HousingModel:
    model = HousingModel("housing", model_dir, cache, max_batch_size=1000)
    model.load()
    return model


async def predict(model: HousingModel, rows: list[dict[str, float]]) -> BatchResult:
    return await model.predict(
        await model.preprocess(Decoded(Route.LEGACY, validate_objects(rows)))
    )


def test_concurrent_identical_misses_run_the_model_once(model_dir: Path) -> None:
    async def scenario() -> None:
        model = new_model(model_dir, SlowCache())
        before = rows_predicted()
        results = await asyncio.gather(*(predict(model, ROWS[:4]) for _ in range(10)))
        assert rows_predicted() - before == 4
        assert all(r.cache_status == "MISS" for r in results)
        for result in results[1:]:
            assert result.predictions.tolist() == results[0].predictions.tolist()
        again = await predict(model, ROWS[:4])
        assert again.cache_status == "HIT"
        assert again.predictions.tolist() == results[0].predictions.tolist()

    asyncio.run(scenario())


def test_overlapping_batches_and_duplicate_rows_share_runs(model_dir: Path) -> None:
    async def scenario() -> None:
        model = new_model(model_dir, SlowCache())
        reference = await predict(new_model(model_dir, LocalCache(100, 60.0)), ROWS[4:8])
        expected = reference.predictions.tolist()
        before = rows_predicted()
        first, second, third = await asyncio.gather(
            predict(model, ROWS[4:7]),
            predict(model, [ROWS[7], ROWS[6], ROWS[5]]),
            predict(model, [ROWS[4], ROWS[4], ROWS[7], ROWS[4]]),
        )
        assert rows_predicted() - before == 4
        assert first.predictions.tolist() == expected[0:3]
        assert second.predictions.tolist() == [expected[3], expected[2], expected[1]]
        assert third.predictions.tolist() == [expected[0], expected[0], expected[3], expected[0]]

    asyncio.run(scenario())


def test_a_model_error_reaches_every_waiter_and_is_not_kept(model_dir: Path) -> None:
    async def scenario() -> None:
        model = new_model(model_dir, SlowCache())
        failing = FailingOnce(model._regressor)
        model._regressor = failing
        results = await asyncio.gather(
            *(predict(model, ROWS[8:10]) for _ in range(5)), return_exceptions=True
        )
        assert all(isinstance(r, RuntimeError) for r in results)
        assert failing.calls == 1
        retried = await predict(model, ROWS[8:10])  # the failed run is gone
        assert retried.cache_status == "MISS" and failing.calls == 2

    asyncio.run(scenario())


def test_a_cancelled_request_does_not_cancel_the_run_others_wait_for(model_dir: Path) -> None:
    async def scenario() -> None:
        model = new_model(model_dir, SlowCache(delay=0.1))
        before = rows_predicted()
        starter = asyncio.create_task(predict(model, ROWS[10:12]))
        await asyncio.sleep(0.02)  # the starter's run is in flight, waiting on the cache
        follower = asyncio.create_task(predict(model, ROWS[10:12]))
        await asyncio.sleep(0.02)
        starter.cancel()
        result = await follower
        with pytest.raises(asyncio.CancelledError):
            await starter
        assert result.cache_status == "MISS"
        assert np.isfinite(result.predictions).all()
        assert rows_predicted() - before == 2

    asyncio.run(scenario())
