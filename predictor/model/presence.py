"""Whether the model is registered and ready, and since when it has not been: the one truth
REST's and gRPC's health answers share."""

from __future__ import annotations

import time
from collections.abc import Callable

from kserve.model_repository import ModelRepository

from predictor.model.housing import HousingModel


class ModelPresence:
    """Whether the model is registered and ready, and since when it has not been."""

    def __init__(
        self,
        model: HousingModel,
        registry: ModelRepository,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._model = model
        self._registry = registry
        self._clock = clock
        self._gone_since: float | None = None

    def gone_for(self) -> float | None:
        """Seconds since the model was first seen missing; None while it is there."""
        model = self._model
        if model.ready and self._registry.get_model(model.name) is model:
            self._gone_since = None
            return None
        now = self._clock()
        if self._gone_since is None:
            self._gone_since = now
        return now - self._gone_since
