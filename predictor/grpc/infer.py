"""gRPC `ModelInfer`: the message read into rows, the model's own path, the answer written.

The same path as V2 REST (predictor.rest.routes.v2): an in-flight slot from the REST routes'
`Admission` (UNAVAILABLE beyond `max_inflight`), the model ready, the rows decoded and
checked by predictor.protocol.v2_grpc, `HousingModel.run` (the cache tiers with their
coalesced Redis exchange, single flight, drift, kserve's stage histograms), the
`ModelInferResponse` written directly. kserve's servicer, data plane, `InferRequest`,
`InferResponse` and interceptors are not on the way; their answers are kept: NOT_FOUND
for another model (kserve's message) or another version (predictor.model.versions),
INVALID_ARGUMENT saying what is wrong, UNIMPLEMENTED for explanations of a model that has
none. Each call is timed in `housing_request_seconds{route="grpc"}` by status name, each
child looked up once; a client error is one short rate-limited WARNING line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Final, NoReturn, Protocol

import grpc
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

from predictor.admission import Admission
from predictor.model.explain import NotExplainable
from predictor.metrics import REQUEST_SECONDS
from predictor.model.housing import Decoded, HousingModel, Route
from predictor.protocol import v2_grpc
from predictor.protocol.schema import InvalidRows
from predictor.upstream.prometheus_histogram import FastObserver
from predictor.model.versions import unserved

logger: Final = logging.getLogger("kserve.predictor.grpc")
INTERNAL_MESSAGE: Final = "internal error: the server could not answer"


class Registry(Protocol):
    """What is served: kserve's `ModelRepository` (None for a model not registered)."""

    def get_model(self, name: str) -> Any: ...


class _Refused(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ModelInferServicer:
    """`ModelInfer(request, context)`: see the module docstring."""

    def __init__(self, model: HousingModel, admission: Admission, registry: Registry) -> None:
        self._model = model
        self._admission = admission
        self._registry = registry
        self._timers: dict[str, FastObserver] = {}
        self._ok = self._timer(grpc.StatusCode.OK)

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ModelInferResponse:
        started = time.perf_counter()
        admission = self._admission
        if not admission.enter():
            await self._abort(context, started, grpc.StatusCode.UNAVAILABLE, _shed(admission))
        try:
            answer = await self._answer(request)
        except _Refused as e:
            await self._abort(context, started, e.code, e.message)
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            remaining = context.time_remaining()
            if remaining is not None and remaining <= 0:
                code = grpc.StatusCode.DEADLINE_EXCEEDED
            self._timer(code).observe(time.perf_counter() - started)
            raise
        except Exception:
            logger.exception("gRPC ModelInfer failed")
            await self._abort(context, started, grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)
        finally:
            admission.leave()
        self._ok.observe(time.perf_counter() - started)
        return answer

    async def _answer(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        model = self._model
        name = request.model_name
        if name != model.name or self._registry.get_model(name) is None:
            raise _Refused(grpc.StatusCode.NOT_FOUND, f"Model with name {name} does not exist.")
        asked = request.model_version
        if asked and asked != model.version:
            raise _Refused(grpc.StatusCode.NOT_FOUND, unserved(name, asked, model.version))
        if not model.ready:
            raise _Refused(grpc.StatusCode.UNAVAILABLE, f"model {name} is not ready")
        try:
            rows, spec = v2_grpc.request_rows(request, model.max_batch_size)
        except InvalidRows as e:
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from e
        try:
            answer, _ = await model.run(Decoded(Route.GRPC, rows, spec, spec.explains))
        except NotExplainable as e:
            raise _Refused(grpc.StatusCode.UNIMPLEMENTED, e.reason) from e
        response: pb.ModelInferResponse = answer
        return response

    def _timer(self, code: grpc.StatusCode) -> FastObserver:
        timer = self._timers.get(code.name)
        if timer is None:
            child = REQUEST_SECONDS.labels("grpc", code.name)
            timer = self._timers[code.name] = FastObserver(child)
        return timer

    async def _abort(
        self, context: Any, started: float, code: grpc.StatusCode, message: str
    ) -> NoReturn:
        self._timer(code).observe(time.perf_counter() - started)
        if code is not grpc.StatusCode.INTERNAL:
            logger.warning(
                "gRPC ModelInfer -> %s: %s", code.name, message, extra={"client_error": True}
            )
        await context.abort(code, message)
        raise AssertionError("context.abort returned")  # it raises


def _shed(admission: Admission) -> str:
    return admission.shed().error or "overloaded"
