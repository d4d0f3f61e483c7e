"""A no-op KServe model: constant predictions over V1 and V2, served as this project serves.

The same kserve ModelServer settings as `python -m predictor` (no per-request latency log,
no access log), so the gap to it is the cost of this project's own work per request.

    python -m perf.peers.kserve_noop --http_port P --grpc_port Q
"""

from __future__ import annotations

import argparse
import logging
import uuid
from typing import Any, Final

from kserve import Model, ModelServer, model_server
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

PREDICTION: Final = 4.214257769392043


class NoopModel(Model):  # type: ignore[misc]
    def load(self) -> bool:
        self.ready = True
        return self.ready

    async def predict(
        self, payload: dict[str, Any] | InferRequest, headers: dict[str, str] | None = None
    ) -> dict[str, Any] | InferResponse:
        if isinstance(payload, InferRequest):
            rows = payload.inputs[0].shape[0]
            output = InferOutput("predict", [rows], "FP64", [PREDICTION] * rows)
            return InferResponse(str(uuid.uuid4()), self.name, infer_outputs=[output])
        return {"predictions": [PREDICTION] * len(payload["instances"])}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    args, _ = parser.parse_known_args()
    model = NoopModel("housing")
    model.load()
    server = ModelServer(enable_latency_logging=False)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    server.start([model])
