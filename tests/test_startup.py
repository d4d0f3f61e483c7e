"""Loading: readiness only once the model is really there, and clear errors otherwise."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.server import spawn_server
from predictor.cache.tiers import LocalCache
from predictor.model.artifact import ModelArtifactError, load_artifact, load_serving_model
from predictor.model.housing import HousingModel


def copy_model(model_dir: Path, target: Path) -> Path:
    shutil.copytree(model_dir, target)
    return target


def new_model(directory: Path) -> HousingModel:
    return HousingModel("housing", directory, LocalCache(10, 60), max_batch_size=10)


def test_model_is_ready_only_after_load(model_dir: Path) -> None:
    model = new_model(model_dir)
    assert model.ready is False
    assert model.load() is True
    assert model.ready is True


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("remove_artifact", "no model file"),
        ("remove_metadata", "metadata.json is missing"),
        ("add_second_model", "ambiguous"),
        ("other_version", "do not belong together"),
        ("corrupt_metadata", "not valid JSON"),
        ("missing_dir", "does not exist"),
    ],
)
def test_broken_model_dirs_fail_loudly_and_stay_unready(
    model_dir: Path, tmp_path: Path, damage: str, message: str
) -> None:
    directory = copy_model(model_dir, tmp_path / "m")
    if damage == "remove_artifact":
        (directory / "model.joblib").unlink()
    elif damage == "remove_metadata":
        (directory / "metadata.json").unlink()
    elif damage == "add_second_model":
        shutil.copy(directory / "model.joblib", directory / "old.pkl")
    elif damage == "other_version":
        metadata = json.loads((directory / "metadata.json").read_text())
        metadata["model_version"] = "0" * 64
        (directory / "metadata.json").write_text(json.dumps(metadata))
    elif damage == "corrupt_metadata":
        (directory / "metadata.json").write_text("{")
    elif damage == "missing_dir":
        shutil.rmtree(directory)
    with pytest.raises(ModelArtifactError, match=message):
        load_artifact(directory)
    with pytest.raises(ModelArtifactError, match=message):
        load_serving_model(directory)
    model = new_model(directory)
    with pytest.raises(ModelArtifactError):
        model.load()
    assert model.ready is False


def test_server_without_a_model_exits_with_a_clear_error(tmp_path: Path) -> None:
    server = spawn_server(["--model_dir", str(tmp_path)])
    try:
        assert server.process.wait(60) == 2
        assert "Cannot load model: no model file in" in server.log()
    finally:
        server.stop()
        server.log_path.unlink(missing_ok=True)
