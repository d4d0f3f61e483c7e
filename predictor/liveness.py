"""Health paths that tell the truth about the model, so Kubernetes can act on it.

kserve answers liveness (`GET /`, `GET /v2/health/live`) with 200 whatever happens, and
server readiness (`GET /v2/health/ready`) with 200 even when no model is registered. Once
the model is gone (unloaded, or stopped), readiness here says so at once (503), and
liveness fails (503) after `unloaded_liveness_seconds`, so the kubelet replaces a pod that
cannot serve instead of keeping it forever. The bound leaves time for a deliberate
reload (with `--enable_model_repository true`) and for a graceful shutdown to finish.
The time is counted from the first health request that finds the model gone (readiness
probes come every few seconds).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from kserve.model_repository import ModelRepository
from starlette.types import ASGIApp, Receive, Scope, Send

from predictor.asgi import send_json
from predictor.model import HousingModel

LIVENESS_PATHS: Final = frozenset({"/", "/v2/health/live"})
READINESS_PATH: Final = "/v2/health/ready"


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


class TruthfulHealth:
    """ASGI layer answering the health paths from `ModelPresence` when the model is gone."""

    def __init__(
        self, inner: ASGIApp, presence: ModelPresence, model_name: str, unloaded_liveness: float
    ) -> None:
        self.inner = inner
        self._presence = presence
        self._name = model_name
        self._bound = unloaded_liveness

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            path = scope["path"]
            if path == READINESS_PATH or path in LIVENESS_PATHS:
                gone = self._presence.gone_for()
                if gone is not None and (path == READINESS_PATH or gone >= self._bound):
                    error = f"model {self._name} is not loaded (for {gone:.0f} s)"
                    await send_json(send, 503, {"error": error})
                    return
        await self.inner(scope, receive, send)
