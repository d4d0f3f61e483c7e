"""Health routes that tell the truth about the model, so Kubernetes can act on it.

- `GET /health`: the original service's check, kept for its clients and load tests (its
  load test calls it on every iteration, as often as `/predict`): 200
  `{"status": "healthy"}` while the model is loaded and ready, 503 otherwise.
- kserve's readiness and liveness (`GET /v2/health/ready`, `GET /`, `GET /v2/health/live`)
  answer 200 whatever happens (readiness even with no model registered). Once the model is
  gone (unloaded, or stopped), readiness here says so at once (503), and liveness fails
  (503) after `unloaded_liveness_seconds`, so the kubelet replaces a pod that cannot serve
  instead of keeping it forever. The bound leaves time for a deliberate reload (with
  `--enable_model_repository true`) and for a graceful shutdown to finish. The time is
  counted from the first health request that finds the model gone (readiness probes come
  every few seconds). While the model is there, kserve answers them.
"""

from __future__ import annotations

from typing import Final

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from predictor.model.housing import HousingModel
from predictor.model.presence import ModelPresence
from predictor.rest.answers import Answer, error_answer, send_answer

PATH: Final = "/health"
LIVENESS_PATHS: Final = ("/", "/v2/health/live")
READINESS_PATH: Final = "/v2/health/ready"
GET_ONLY: Final = [(b"allow", b"GET, HEAD")]
_NO_STORE: Final = [(b"cache-control", b"no-store")]
_HEALTHY: Final = Answer(200, orjson.dumps({"status": "healthy"}), _NO_STORE)
_UNHEALTHY: Final = Answer(
    503, orjson.dumps({"status": "unhealthy", "error": "the model is not loaded"}), _NO_STORE
)


async def answer(scope: Scope, send: Send, ready: bool) -> None:
    """`/health`'s answer."""
    method = scope["method"]
    if method not in ("GET", "HEAD"):
        reply = error_answer(405, "use GET", [*_NO_STORE, *GET_ONLY])
    else:
        reply = _HEALTHY if ready else _UNHEALTHY
    await send_answer(send, reply, head=method == "HEAD")


def route(model: HousingModel) -> ASGIApp:
    """`/health` for this model."""

    async def health(scope: Scope, receive: Receive, send: Send) -> None:
        await answer(scope, send, model.ready)

    return health


class TruthfulHealth:
    """kserve's readiness and liveness paths, answered 503 here once the model is gone."""

    methods = ("GET",)

    def __init__(
        self, kserve: ASGIApp, presence: ModelPresence, model_name: str, unloaded_liveness: float
    ) -> None:
        self._kserve = kserve
        self._presence = presence
        self._name = model_name
        self._bound = unloaded_liveness

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method in ("GET", "HEAD"):
            gone = self._presence.gone_for()
            if gone is not None and (scope["path"] == READINESS_PATH or gone >= self._bound):
                error = f"model {self._name} is not loaded (for {gone:.0f} s)"
                await send_answer(send, error_answer(503, error), head=method == "HEAD")
                return
        await self._kserve(scope, receive, send)
