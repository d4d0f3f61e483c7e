"""tritonclient.grpc's calls against a server, in a process of their own: tritonclient and
kserve register the same `inference.*` protobuf messages, so one process cannot import both.

    python -m tests.triton_grpc_probe HOST:GRPC_PORT VERSION ROWS_JSON

Prints one JSON object: what each call returned, or the error it raised.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import tritonclient.grpc as triton_grpc
from tritonclient.utils import InferenceServerException

MODEL = "housing"
OUTPUT = "predict"


def outcome(call: Callable[[], Any]) -> Any:
    try:
        return {"value": call()}
    except InferenceServerException as e:
        return {"error": str(e)}


def main(target: str, version: str, rows: list[list[float]]) -> dict[str, Any]:
    client = triton_grpc.InferenceServerClient(target)
    matrix = np.array(rows, dtype=np.float64)
    tensor = triton_grpc.InferInput("input-0", list(matrix.shape), "FP64")
    tensor.set_data_from_numpy(matrix)  # raw_input_contents: tritonclient's only way

    def infer(**kwargs: Any) -> dict[str, Any]:
        result = client.infer(MODEL, [tensor], **kwargs)
        response = result.get_response()
        return {
            "predictions": result.as_numpy(OUTPUT).tolist(),
            "raw_outputs": len(response.raw_output_contents),
            "model_version": response.model_version,
        }

    named = [triton_grpc.InferRequestedOutput(OUTPUT)]
    return {
        "infer": outcome(infer),
        "named_output": outcome(lambda: infer(outputs=named)),
        "unknown_output": outcome(
            lambda: infer(outputs=[triton_grpc.InferRequestedOutput("scores")])
        ),
        "versioned": outcome(lambda: infer(model_version=version)),
        "other_version": outcome(lambda: infer(model_version="0" * 16)),
        "versions": outcome(lambda: list(client.get_model_metadata(MODEL).versions)),
        "ready": outcome(lambda: client.is_model_ready(MODEL, version)),
        "other_ready": outcome(lambda: client.is_model_ready(MODEL, "0" * 16)),
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))))
