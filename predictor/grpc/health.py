"""gRPC health, true to the same readiness and liveness as REST's (predictor.model.presence).

`V2Health`: the V2 service's `ServerReady` and `ServerLive`, as REST's `/v2/health/ready`
and `/v2/health/live` answer at that moment (liveness fails only after the model has been
gone for `unloaded_liveness` seconds).

`Health`: `grpc.health.v1.Health` (Check and Watch).

Kubernetes' native `grpc:` probes, grpc-health-probe and load balancers ask this service.
The server (service `""`) and the V2 inference service are SERVING while the model is
registered and ready, NOT_SERVING from the moment it is not (an unload, a stop): the
answer `GET /v2/health/ready` gives at that moment, from the same `gone_for()`. Any other
service is NOT_FOUND (Check) or SERVICE_UNKNOWN (Watch), as the protocol says.

Watch sends the current status at once, then each change, found by looking again every
`watch_interval` seconds (the truth is a property of the model and its registry, which
nothing announces; a probe's period is seconds). Once the server drains (`drain`), every
service is NOT_SERVING and each Watch sends that and ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any, Final, Protocol

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

SERVICE_NAME: Final = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
WATCH_INTERVAL_SECONDS: Final = 0.5
_SERVING: Final[int] = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING: Final[int] = health_pb2.HealthCheckResponse.NOT_SERVING
_UNKNOWN: Final[int] = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


class Presence(Protocol):
    """What readiness is made of (predictor.rest.routes.health.ModelPresence)."""

    def gone_for(self) -> float | None:
        """Seconds since the model went missing; None while it is there."""


class V2Health:
    """`ServerReady` and `ServerLive` of the V2 service (see the module docstring)."""

    def __init__(self, presence: Presence, unloaded_liveness: float) -> None:
        self._presence = presence
        self._bound = unloaded_liveness

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: Any
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._presence.gone_for() is None)

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: Any
    ) -> pb.ServerLiveResponse:
        gone = self._presence.gone_for()
        return pb.ServerLiveResponse(live=gone is None or gone < self._bound)


class Health(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    """Check and Watch for the server (`""`) and each of `services`."""

    def __init__(
        self,
        presence: Presence,
        services: Iterable[str],
        watch_interval: float = WATCH_INTERVAL_SECONDS,
    ) -> None:
        self._presence = presence
        self._services = frozenset(("", *services))
        self._interval = watch_interval
        self._draining = asyncio.Event()

    def drain(self) -> None:
        """The server is stopping: every service NOT_SERVING from now on, and each open
        Watch sends that and ends (else it would hold the stop for the whole grace
        period), as grpc's own health server's `enter_graceful_shutdown`."""
        self._draining.set()

    def status(self, service: str) -> int:
        """`service`'s ServingStatus now."""
        if service not in self._services:
            return _UNKNOWN
        if self._draining.is_set() or self._presence.gone_for() is not None:
            return _NOT_SERVING
        return _SERVING

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: aio.ServicerContext[Any, Any]
    ) -> health_pb2.HealthCheckResponse:
        status = self.status(request.service)
        if status == _UNKNOWN:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, context: aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        last: int | None = None
        while True:
            status = self.status(request.service)
            if status != last:
                yield health_pb2.HealthCheckResponse(status=status)
                last = status
            if self._draining.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._draining.wait(), self._interval)


def add_health(server: aio.Server, health: Health) -> None:
    """Serve `grpc.health.v1.Health` on `server`."""
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
