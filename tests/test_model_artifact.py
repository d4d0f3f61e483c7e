"""scripts/model_artifact.py: the storageUri archive and the modelcar image's build line."""

from __future__ import annotations

import json
import sys
import tarfile
from pathlib import Path

import pytest

from predictor.artifact import load_serving_model
from tests.server import REPO

sys.path.insert(0, str(REPO / "scripts"))
import model_artifact


def test_archive_is_reproducible_and_unpacks_as_kserve_does(
    model_dir: Path, tmp_path: Path
) -> None:
    """KServe's storage initializer opens a single .tar.gz with tarfile and
    `extractall(out_dir, filter="data")` into /mnt/models: the result must serve."""
    first = model_artifact.write_archive(model_dir, tmp_path / "a" / "model.tar.gz")
    second = model_artifact.write_archive(model_dir, tmp_path / "b" / "model.tar.gz")
    assert first.read_bytes() == second.read_bytes()
    with tarfile.open(first, "r", encoding="utf-8") as archive:
        members = archive.getmembers()
        assert [m.name for m in members] == ["metadata.json", "model.joblib", "compiled.npz"]
        assert all(m.isfile() and m.mode == 0o644 and m.uid == 0 for m in members)
        archive.extractall(tmp_path / "mnt-models", filter="data")
    served = load_serving_model(tmp_path / "mnt-models")
    assert served.version == json.loads((model_dir / "metadata.json").read_text())["model_version"]


def test_archive_refuses_a_directory_the_server_would_refuse(tmp_path: Path) -> None:
    from predictor.artifact import ModelArtifactError

    with pytest.raises(ModelArtifactError):
        model_artifact.write_archive(tmp_path, tmp_path / "out.tar.gz")


def test_image_build_line_carries_version_and_metrics(model_dir: Path) -> None:
    metadata = json.loads((model_dir / "metadata.json").read_text())
    command = model_artifact.build_image(model_dir, "r/m:1", "base:1", "docker", [])
    assert command[:2] == ["docker", "build"] and command[-1] == str(model_dir)
    build_args = dict(
        command[i + 1].split("=", 1) for i, arg in enumerate(command) if arg == "--build-arg"
    )
    assert build_args["BASE_IMAGE"] == "base:1"
    assert build_args["MODEL_VERSION"] == metadata["model_version"]
    assert float(build_args["MODEL_R2"]) == pytest.approx(
        metadata["metrics_held_out"]["r2"], abs=1e-4
    )
    assert {"MODEL_MAE", "MODEL_RMSE", "MODEL_ESTIMATOR", "SOURCE_REVISION"} <= build_args.keys()
    # The drift histogram's buckets, as the server reads them from the metadata.
    assert json.loads(build_args["MODEL_FEATURE_DECILES"]) == metadata["drift"]["boundaries"]


@pytest.mark.parametrize(
    "name, expected",
    [
        ("ghcr.io/acme/housing-model", "ghcr.io/acme/housing-model:abcdef0123456789"),
        ("ghcr.io/acme/housing-model:v7", "ghcr.io/acme/housing-model:v7"),
        ("localhost:5000/housing-model", "localhost:5000/housing-model:abcdef0123456789"),
    ],
)
def test_untagged_images_are_tagged_with_the_model_version(name: str, expected: str) -> None:
    assert model_artifact.image_tag(name, "abcdef0123456789" * 4) == expected


def test_the_tag_is_the_version_the_server_reports() -> None:
    from predictor.model import VERSION_CHARS

    assert model_artifact.VERSION_CHARS == VERSION_CHARS
