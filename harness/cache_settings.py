"""The server's cache settings, with their true defaults, for tests that build a cache."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from predictor.settings import CacheSettings, Settings


def cache_settings(redis_url: str | None = None, **overrides: Any) -> CacheSettings:
    """What `python -m predictor --model_dir .` would give the cache (its environment
    included), pointed at `redis_url`, with `overrides` (CacheSettings' field names)."""
    defaults = Settings(model_dir=Path(".")).cache
    return replace(defaults, redis_url=redis_url, **overrides)
