"""gRPC `ModelInfer`: the message read into rows, the model's own path, the answer written.

The same path as V2 REST (predictor.rest.routes.v2): the model ready, the rows decoded and
checked by predictor.protocol.v2_grpc, `HousingModel.run` (the cache tiers with their
coalesced Redis exchange, single flight, drift, kserve's stage histograms), the
`ModelInferResponse` written directly. kserve's servicer, data plane, `InferRequest` and
`InferResponse` are not on the way; their answers are kept: NOT_FOUND for another model
(kserve's message) or another version (predictor.model.versions), INVALID_ARGUMENT
saying what is wrong, UNIMPLEMENTED for explanations of a model that has none. The
in-flight slot, the timing and the error statuses are predictor.grpc.calls'.
"""

from __future__ import annotations

from typing import Any, Protocol

from grpc_interceptor.exceptions import InvalidArgument, NotFound, Unavailable, Unimplemented
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

from predictor.model.explain import NotExplainable
from predictor.model.housing import Decoded, HousingModel, Route
from predictor.model.versions import unserved
from predictor.protocol import v2_grpc
from predictor.protocol.schema import InvalidRows


class Registry(Protocol):
    """What is served: kserve's `ModelRepository` (None for a model not registered)."""

    def get_model(self, name: str) -> Any: ...


class ModelInferServicer:
    """`ModelInfer(request, context)`: see the module docstring."""

    def __init__(self, model: HousingModel, registry: Registry) -> None:
        self._model = model
        self._registry = registry

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: Any
    ) -> pb.ModelInferResponse:
        model = self._model
        name = request.model_name
        if name != model.name or self._registry.get_model(name) is None:
            raise NotFound(f"Model with name {name} does not exist.")
        asked = request.model_version
        if asked and asked != model.version:
            raise NotFound(unserved(name, asked, model.version))
        if not model.ready:
            raise Unavailable(f"model {name} is not ready")
        try:
            rows, spec = v2_grpc.request_rows(request, model.max_batch_size)
        except InvalidRows as e:
            raise InvalidArgument(str(e)) from e
        try:
            answer, _ = await model.run(Decoded(Route.GRPC, rows, spec, spec.explains))
        except NotExplainable as e:
            raise Unimplemented(e.reason) from e
        response: pb.ModelInferResponse = answer
        return response
