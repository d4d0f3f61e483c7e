"""Unit tests of the in-process LRU with TTL."""

from __future__ import annotations

import asyncio

import pytest

from predictor.cache.keys import cache_key
from predictor.cache.tiers import LocalCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_lookup_returns_none_for_misses_in_request_order() -> None:
    cache = LocalCache(10, 60)
    asyncio.run(cache.insert({"a": 1.0, "c": 3.0}))
    assert asyncio.run(cache.lookup(["a", "b", "c"])) == [1.0, None, 3.0]


def test_entries_expire_after_ttl() -> None:
    clock = Clock()
    cache = LocalCache(10, 5, clock=clock)
    cache.put_many({"a": 1.0})
    clock.now += 4.9
    assert cache.get_many(["a"]) == [1.0]
    clock.now += 0.2
    assert cache.get_many(["a"]) == [None]
    assert len(cache) == 0


def test_least_recently_used_is_evicted() -> None:
    cache = LocalCache(2, 60)
    cache.put_many({"a": 1.0, "b": 2.0})
    cache.get_many(["a"])  # a is now more recent than b
    cache.put_many({"c": 3.0})
    assert cache.get_many(["a", "b", "c"]) == [1.0, None, 3.0]
    assert len(cache) == 2


def test_bounds_are_validated() -> None:
    with pytest.raises(ValueError):
        LocalCache(0, 60)
    with pytest.raises(ValueError):
        LocalCache(1, 0)


def test_cache_key_layout() -> None:
    assert cache_key("housing", "abc", "d41d8cd98f00b204e9800998ecf8427e") == (
        "housing:abc:d41d8cd98f00b204e9800998ecf8427e"
    )
