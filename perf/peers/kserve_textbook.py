"""The textbook peer: a KServe custom model as the KServe docs teach it, with kserve defaults.

`joblib.load` in `load`, `self.model.predict(np.array(instances))` in `predict` (V1).

    python -m perf.peers.kserve_textbook --model_dir DIR --http_port P --grpc_port Q
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from kserve import Model, ModelServer, model_server


class TextbookModel(Model):  # type: ignore[misc]
    def __init__(self, name: str, model_dir: Path) -> None:
        super().__init__(name)
        self.model_dir = model_dir
        self.model: Any = None

    def load(self) -> bool:
        self.model = joblib.load(self.model_dir / "model.joblib")
        self.ready = True
        return self.ready

    def predict(self, payload: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        instances = payload["instances"]
        return {"predictions": self.model.predict(np.array(instances)).tolist()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--model_dir", type=Path, required=True)
    args, _ = parser.parse_known_args()
    model = TextbookModel("housing", args.model_dir)
    model.load()
    ModelServer().start([model])
