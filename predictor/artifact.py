"""The model directory: `model.joblib` plus `metadata.json`, written and read in one place.

The model version is the sha256 of the artifact's bytes. `load_artifact` checks it
against the metadata, so a directory whose metadata describes another artifact fails
loudly instead of serving (and caching under) the wrong version.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import joblib

from predictor.schema import FEATURES

ARTIFACT_NAME: Final = "model.joblib"
METADATA_NAME: Final = "metadata.json"
_MODEL_SUFFIXES: Final = (".joblib", ".pkl", ".pickle")


class ModelArtifactError(RuntimeError):
    """The model directory is missing, incomplete, ambiguous or inconsistent."""


@dataclass(frozen=True)
class LoadedArtifact:
    estimator: Any
    metadata: dict[str, Any]

    @property
    def version(self) -> str:
        return str(self.metadata["model_version"])


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_atomically(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)  # readable by the non-root user that serves it
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_artifact(model_dir: Path, estimator: Any, metadata: dict[str, Any]) -> dict[str, Any]:
    """Write the estimator and its metadata (with `model_version` added); return the metadata."""
    model_dir.mkdir(parents=True, exist_ok=True)
    artifact = model_dir / ARTIFACT_NAME
    _write_atomically(artifact, lambda tmp: joblib.dump(estimator, tmp))
    full = {"model_version": sha256_file(artifact), **metadata}
    _write_atomically(
        model_dir / METADATA_NAME,
        lambda tmp: tmp.write_text(json.dumps(full, indent=2, sort_keys=True) + "\n"),
    )
    return full


def _find_artifact(model_dir: Path) -> Path:
    if not model_dir.is_dir():
        raise ModelArtifactError(f"model directory {model_dir} does not exist")
    candidates = sorted(p for p in model_dir.iterdir() if p.suffix in _MODEL_SUFFIXES)
    if not candidates:
        raise ModelArtifactError(
            f"no model file in {model_dir}: expected {ARTIFACT_NAME} "
            "(train one with `python -m predictor.train --model_dir DIR`)"
        )
    if len(candidates) > 1:
        names = ", ".join(p.name for p in candidates)
        raise ModelArtifactError(
            f"ambiguous model directory {model_dir}: several model files ({names}); "
            f"keep exactly one, named {ARTIFACT_NAME}"
        )
    if candidates[0].name != ARTIFACT_NAME:
        raise ModelArtifactError(
            f"unexpected model file {candidates[0].name} in {model_dir}: expected {ARTIFACT_NAME}"
        )
    return candidates[0]


def load_artifact(model_dir: Path) -> LoadedArtifact:
    """Load and check the model directory; raise `ModelArtifactError` saying what is wrong."""
    artifact = _find_artifact(model_dir)
    metadata_path = model_dir / METADATA_NAME
    try:
        metadata = json.loads(metadata_path.read_text())
    except FileNotFoundError as e:
        raise ModelArtifactError(f"{metadata_path} is missing") from e
    except json.JSONDecodeError as e:
        raise ModelArtifactError(f"{metadata_path} is not valid JSON: {e}") from e
    if not isinstance(metadata, dict):
        raise ModelArtifactError(f"{metadata_path} must hold a JSON object")
    if list(metadata.get("features", [])) != list(FEATURES):
        raise ModelArtifactError(
            f"{metadata_path} declares features {metadata.get('features')}, "
            f"this server serves {list(FEATURES)}"
        )
    actual = sha256_file(artifact)
    if metadata.get("model_version") != actual:
        raise ModelArtifactError(
            f"{metadata_path} describes model_version {metadata.get('model_version')}, "
            f"but {artifact.name} has sha256 {actual}: the two files do not belong together"
        )
    estimator = joblib.load(artifact)
    if not callable(getattr(estimator, "predict", None)):
        raise ModelArtifactError(f"{artifact} holds {type(estimator).__name__}, not a regressor")
    return LoadedArtifact(estimator=estimator, metadata=metadata)
