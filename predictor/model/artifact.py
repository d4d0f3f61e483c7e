"""The model directory: `model.joblib`, `compiled.npz` and `metadata.json`, in one place.

The model version is the sha256 of the artifact's bytes. Loading checks it against the
metadata, so a directory whose metadata describes another artifact fails loudly instead of
serving (and caching under) the wrong version.

`compiled.npz` holds the compiled lookup tables of a HistGradientBoosting model (see
`predictor.model.compiled`), checked against scikit-learn when it was written at training time;
the metadata records its sha256. `load_serving_model` serves from those tables without
importing scikit-learn or unpickling the estimator: that import and unpickling are most of
a cold start (Knative scales from zero), and a request never needs them. If the tables are
missing or do not match, it falls back to the estimator (compiled at load, or scikit-learn).
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from predictor.model.compiled import (
    KIND_COMPILED_HGB,
    CompiledHGBRegressor,
    Regressor,
    compile_regressor,
)
from predictor.protocol.schema import FEATURES, N_FEATURES

ARTIFACT_NAME: Final = "model.joblib"
COMPILED_NAME: Final = "compiled.npz"
METADATA_NAME: Final = "metadata.json"
_MODEL_SUFFIXES: Final = (".joblib", ".pkl", ".pickle")
# The model version users see (headers, V2, cache keys, training output, image tags and labels):
# this many leading hex digits of the artifact's sha256, which the metadata keeps in full.
VERSION_CHARS: Final = 16

logger = logging.getLogger(__name__)


def short_version(model_version: str) -> str:
    """The one form of a model version that users see."""
    return model_version[:VERSION_CHARS]


class ModelArtifactError(RuntimeError):
    """The model directory is missing, incomplete, ambiguous or inconsistent."""


@dataclass(frozen=True)
class LoadedArtifact:
    estimator: Any
    metadata: dict[str, Any]

    @property
    def version(self) -> str:
        return str(self.metadata["model_version"])


class LoadPath(enum.Enum):
    """How `load_serving_model` obtained the regressor."""

    COMPILED_FILE = "compiled tables from file"
    COMPILED_AT_LOAD = "compiled at load"
    SKLEARN = "sklearn"


@dataclass(frozen=True)
class ServingModel:
    """What the server needs from a model directory: no estimator, only its regressor."""

    regressor: Regressor
    metadata: dict[str, Any]
    path: LoadPath

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
    """Write the estimator, its compiled tables if it has a fast path, and its metadata
    (with `model_version` and `compiled` added, written last); return the metadata."""
    import joblib

    model_dir.mkdir(parents=True, exist_ok=True)
    artifact = model_dir / ARTIFACT_NAME
    _write_atomically(artifact, lambda tmp: joblib.dump(estimator, tmp))
    compiled_path = model_dir / COMPILED_NAME
    regressor = compile_regressor(estimator, verify=True)
    compiled: dict[str, str] | None = None
    if isinstance(regressor, CompiledHGBRegressor):
        _write_atomically(compiled_path, regressor.save)
        compiled = {
            "file": COMPILED_NAME,
            "sha256": sha256_file(compiled_path),
            "kind": KIND_COMPILED_HGB,
        }
    # Computed last, so that a `model_version` or `compiled` copied from older metadata
    # cannot describe other files than these.
    full = {**metadata, "model_version": sha256_file(artifact), "compiled": compiled}
    _write_atomically(
        model_dir / METADATA_NAME,
        lambda tmp: tmp.write_text(json.dumps(full, indent=2, sort_keys=True) + "\n"),
    )
    if compiled is None:
        compiled_path.unlink(missing_ok=True)  # left over from an earlier model
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
    artifact, metadata = _checked(model_dir)
    return LoadedArtifact(estimator=_load_estimator(artifact), metadata=metadata)


def load_serving_model(model_dir: Path) -> ServingModel:
    """Check the model directory like `load_artifact`, then get the regressor to serve.

    From the compiled tables when the metadata names them and their sha256 matches (no
    scikit-learn import); otherwise from the estimator, compiled at load when it has a fast
    path, else scikit-learn's own `predict`.
    """
    artifact, metadata = _checked(model_dir)
    compiled, why_not = _load_compiled(model_dir, metadata.get("compiled"))
    if compiled is not None:
        return ServingModel(compiled, metadata, LoadPath.COMPILED_FILE)
    if why_not:
        logger.warning("Not using the compiled tables (%s); loading %s", why_not, artifact.name)
    regressor = compile_regressor(_load_estimator(artifact))
    path = LoadPath.COMPILED_AT_LOAD if regressor.kind == KIND_COMPILED_HGB else LoadPath.SKLEARN
    return ServingModel(regressor, metadata, path)


def _checked(model_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The model file and its metadata, once both are found and belong together."""
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
    return artifact, metadata


def _load_estimator(artifact: Path) -> Any:
    import joblib  # imports scikit-learn as it unpickles: only when the estimator is needed

    estimator = joblib.load(artifact)
    if not callable(getattr(estimator, "predict", None)):
        raise ModelArtifactError(f"{artifact} holds {type(estimator).__name__}, not a regressor")
    return estimator


def _load_compiled(model_dir: Path, entry: Any) -> tuple[CompiledHGBRegressor | None, str]:
    """The compiled tables `entry` (metadata's "compiled") names, or why they cannot be used
    ("" when the metadata names none: the estimator has no fast path)."""
    if entry is None:
        return None, ""
    if not isinstance(entry, dict) or entry.get("kind") != KIND_COMPILED_HGB:
        return None, f"unknown compiled entry {entry!r} in {METADATA_NAME}"
    if entry.get("file") != COMPILED_NAME:
        return None, f"{METADATA_NAME} names compiled file {entry.get('file')!r}"
    path = model_dir / COMPILED_NAME
    if not path.is_file():
        return None, f"{path} is missing"
    actual = sha256_file(path)
    if entry.get("sha256") != actual:
        return None, f"{path.name} has sha256 {actual}, {METADATA_NAME} says {entry.get('sha256')}"
    try:
        compiled = CompiledHGBRegressor.load(path)
    except ValueError as e:
        return None, str(e)
    if compiled.n_features != N_FEATURES:
        return None, f"{path.name} has {compiled.n_features} features, expected {N_FEATURES}"
    return compiled, ""
