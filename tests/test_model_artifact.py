"""scripts/model_artifact.py: the storageUri archive and the modelcar image's build line."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from harness.paths import REPO
from harness.scripts import load_script
from predictor.model.artifact import VERSION_CHARS, load_serving_model

model_artifact = load_script("model_artifact")


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
    from predictor.model.artifact import ModelArtifactError

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
    # One form of the model version everywhere a user sees it: the label is the tag's.
    assert build_args["MODEL_VERSION"] == metadata["model_version"][:VERSION_CHARS]
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
    from predictor.model.housing import VERSION_CHARS as SERVED_CHARS

    assert VERSION_CHARS == SERVED_CHARS == 16


def test_training_prints_the_version_in_its_one_form(model_dir: Path, tmp_path: Path) -> None:
    """`make train` says the version exactly as headers, tags and labels carry it."""
    data = os.environ.get("HOUSING_DATA") or str(REPO.parent / "shared/data/cal_housing.data")
    out = subprocess.run(
        [sys.executable, "-m", "predictor.train", "--model_dir", str(tmp_path / "m"),
         "--data", data, "--max_rows", "2000"],
        capture_output=True, text=True, check=True, cwd=REPO,
    ).stdout  # fmt: skip
    version = json.loads((tmp_path / "m" / "metadata.json").read_text())["model_version"]
    assert f"(model version {version[:VERSION_CHARS]})" in out
    assert version[: VERSION_CHARS + 1] not in out


def fake_docker(directory: Path, version: str, buildx: bool, daemon: bool) -> str:
    """A docker client that answers `version` (client and server) and `buildx version` like
    a real one of that version, with or without the buildx plugin and a daemon."""
    directory.mkdir(parents=True)
    script = directory / "docker"
    script.write_text(
        "#!/bin/sh\n"
        f'case "$*" in *Server.Version*) exit {0 if daemon else 1};; '
        f"version*) echo {version};; buildx*) exit {0 if buildx else 1};; esac\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_a_docker_without_buildx_is_passed_over_for_one_that_builds(tmp_path: Path) -> None:
    """The newer client first on PATH lacks buildx ("buildx component is missing"); Debian's
    20.10 client builds with BuildKit built in: that one is taken."""
    new = fake_docker(tmp_path / "local", "27.3.1", buildx=False, daemon=True)
    debian = fake_docker(tmp_path / "debian", "20.10.24+dfsg1", buildx=False, daemon=True)
    assert "buildx" in (model_artifact.docker_problem(new) or "")
    assert model_artifact.find_docker([new, debian]) == debian
    with_plugin = fake_docker(tmp_path / "plugin", "27.3.1", buildx=True, daemon=True)
    assert model_artifact.find_docker([with_plugin, debian]) == with_plugin


def test_no_usable_docker_is_a_clear_error(tmp_path: Path) -> None:
    new = fake_docker(tmp_path / "local", "27.3.1", buildx=False, daemon=True)
    no_daemon = fake_docker(tmp_path / "debian", "20.10.24", buildx=False, daemon=False)
    with pytest.raises(model_artifact.DockerUnusableError) as error:
        model_artifact.find_docker([new, no_daemon, str(tmp_path / "absent")])
    message = str(error.value)
    assert "needs the buildx plugin" in message and "no Docker daemon answers" in message
    assert "docker.io" in message


def test_model_image_without_docker_says_why_instead_of_a_traceback(
    model_dir: Path, tmp_path: Path
) -> None:
    no_daemon = fake_docker(tmp_path / "d", "20.10.24", buildx=False, daemon=False)
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "model_artifact.py"), "image",
         "--model_dir", str(model_dir), "--tag", "r/m", "--docker", no_daemon],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "no Docker daemon answers" in result.stderr
