"""tritonclient.grpc's repository calls against a server, in a process of their own
(tritonclient and kserve register the same `inference.*` protobuf messages, so one process
cannot import both).

    python -m tests.triton_repository_probe HOST:GRPC_PORT load|unload MODEL

Prints one JSON object: `{"value": null}`, or `{"error": ...}` with the error tritonclient raised.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import tritonclient.grpc as triton_grpc
from tritonclient.utils import InferenceServerException


def main(target: str, action: str, model: str) -> dict[str, Any]:
    client = triton_grpc.InferenceServerClient(target)
    call = {"load": client.load_model, "unload": client.unload_model}[action]
    try:
        call(model, client_timeout=30)
    except InferenceServerException as e:
        return {"error": str(e)}
    finally:
        client.close()
    return {"value": None}


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:4])))
