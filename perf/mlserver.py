"""MLServer + mlserver-sklearn, the V2 peer, in its own venv (`perf/.venv-mlserver`).

Installed on first use with pinned versions, and with the scikit-learn version of this
project's venv so that it unpickles the very same `model.joblib`. Served with MLServer's
defaults except the ports.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Final

from perf.loadgen import PERF_DIR
from perf.payloads import MODEL_NAME
from perf.procs import Service, spawn
from tests.server import free_port

MLSERVER_VERSION: Final = "1.7.1"
VENV: Final = PERF_DIR / ".venv-mlserver"
READY_PATH: Final = f"/v2/models/{MODEL_NAME}/ready"


class MLServerUnavailable(RuntimeError):
    """MLServer could not be installed here; the benchmark goes on without it."""


def requirements() -> list[str]:
    return [
        f"mlserver=={MLSERVER_VERSION}",
        f"mlserver-sklearn=={MLSERVER_VERSION}",
        f"scikit-learn=={metadata.version('scikit-learn')}",
        # MLServer 1.7.1's inference-pool workers call asyncio.get_event_loop() in a fresh
        # process, which uvloop >= 0.22 refuses ("There is no current event loop").
        "uvloop==0.21.0",
    ]


def ensure_venv(venv: Path = VENV) -> Path:
    """The `mlserver` executable, installing it into `venv` unless already there."""
    executable = venv / "bin" / "mlserver"
    stamp = venv / ".installed"
    wanted = " ".join(requirements())
    if executable.exists() and stamp.exists() and stamp.read_text() == wanted:
        return executable
    print(f"installing {wanted} into {venv} (once) ...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, *requirements()], check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as e:
        raise MLServerUnavailable(f"pip install {wanted} failed: {e.stderr or e}") from e
    stamp.write_text(wanted)
    return executable


def write_settings(model_dir: Path, work_dir: Path, http_port: int) -> Path:
    """A repository directory: server settings.json and the model's model-settings.json."""
    repository = work_dir / "mlserver"
    (repository / MODEL_NAME).mkdir(parents=True, exist_ok=True)
    server = {"http_port": http_port, "grpc_port": free_port(), "metrics_port": free_port()}
    model = {
        "name": MODEL_NAME,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": str((model_dir / "model.joblib").resolve())},
    }
    (repository / "settings.json").write_text(json.dumps(server, indent=2))
    (repository / MODEL_NAME / "model-settings.json").write_text(json.dumps(model, indent=2))
    return repository


def spawn_mlserver(
    executable: Path, model_dir: Path, work_dir: Path, env: Mapping[str, str] | None = None
) -> Service:
    port = free_port()
    repository = write_settings(model_dir, work_dir, port)
    command = [str(executable), "start", str(repository)]
    return spawn("mlserver", command, port, work_dir, env)
