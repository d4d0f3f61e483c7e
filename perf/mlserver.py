"""MLServer + mlserver-sklearn, the V2 peer, in its own venv outside the checkout.

Installed on first use with pinned versions, and with the scikit-learn version of this
project's venv so that it unpickles the very same `model.joblib`. The venv (about half a
gigabyte) lives in the user's cache directory, `${XDG_CACHE_HOME:-~/.cache}/housing-predictor/`
(or `$HOUSING_PREDICTOR_CACHE`), one per set of pinned versions, so every clone reuses it
and `make clean` leaves it alone. Served with MLServer's defaults except the ports.
"""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Final

from harness.payloads import MODEL_NAME
from harness.server import free_port
from perf.procs import Service, spawn

MLSERVER_VERSION: Final = "1.7.1"
CACHE_ENV: Final = "HOUSING_PREDICTOR_CACHE"
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


def cache_dir(environ: Mapping[str, str]) -> Path:
    """This project's cache directory: `$HOUSING_PREDICTOR_CACHE`, else under XDG's."""
    if environ.get(CACHE_ENV):
        return Path(environ[CACHE_ENV])
    xdg = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "housing-predictor"


def default_venv(environ: Mapping[str, str]) -> Path:
    """The venv for these pinned versions, e.g. `.../mlserver-1.7.1-sklearn-1.7.2-py3.11`."""
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    name = f"mlserver-{MLSERVER_VERSION}-sklearn-{metadata.version('scikit-learn')}-py{python}"
    return cache_dir(environ) / name


def ensure_venv(venv: Path) -> Path:
    """The `mlserver` executable, installing it into `venv` unless already there.

    Checkouts share the venv: a lock file next to it keeps two of them from installing
    into it at once.
    """
    venv.parent.mkdir(parents=True, exist_ok=True)
    with venv.with_name(venv.name + ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _install_once(venv)


def _install_once(venv: Path) -> Path:
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
    server = {
        "http_port": http_port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        # MLServer's defaults are `.envs` and `.metrics` in its working directory: the checkout.
        "environments_dir": str((work_dir / "mlserver-envs").resolve()),
        "metrics_dir": str((work_dir / "mlserver-metrics").resolve()),
    }
    model = {
        "name": MODEL_NAME,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": str((model_dir / "model.joblib").resolve())},
    }
    (repository / "settings.json").write_text(json.dumps(server, indent=2))
    (repository / MODEL_NAME / "model-settings.json").write_text(json.dumps(model, indent=2))
    return repository


def spawn_mlserver(
    executable: Path,
    model_dir: Path,
    work_dir: Path,
    env: Mapping[str, str] | None = None,
    cpus: Sequence[int] | None = None,
) -> Service:
    port = free_port()
    repository = write_settings(model_dir, work_dir, port)
    command = [str(executable), "start", str(repository)]
    return spawn("mlserver", command, port, work_dir, env, cpus)
