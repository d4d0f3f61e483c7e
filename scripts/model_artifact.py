"""Ship a trained model directory the KServe way, without rebuilding the server image.

    .venv/bin/python scripts/model_artifact.py image --model_dir DIR --tag REPO[:TAG]
                                    [--base IMAGE] [--docker PATH] [--network NET] [--push]
    .venv/bin/python scripts/model_artifact.py archive --model_dir DIR [--out FILE]

`image` builds a modelcar (deploy/model-image/Dockerfile: the files under /models/ on a
busybox base) labelled with the model version and held-out metrics of DIR/metadata.json, for
`storageUri: oci://REPO:TAG`; without a TAG, the tag is the model version as the server
names it (X-Model-Version: the first 16 hex digits of the sha256 of model.joblib).
`archive` writes a reproducible .tar.gz of the same files at the archive's root, which
KServe's storage initializer unpacks into /mnt/models when storageUri names it (s3://, gs://
or https://). Both check the directory first, as the server will.

The Docker client: --docker, else $DOCKER, else the first of /usr/bin/docker (Debian's
docker.io) and the `docker` on PATH that can build with BuildKit (a client older than 23 has
it built in; a newer one needs the buildx plugin) and reaches a daemon. The base: --base,
else the Dockerfile's busybox if the daemon has it or can pull it, else the busybox image
`make image-test` bootstraps from Debian (housing-ci/busybox:bookworm) if present.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from predictor.model.artifact import load_serving_model, short_version

REPO: Final = Path(__file__).resolve().parents[1]
MODEL_DOCKERFILE: Final = REPO / "deploy" / "model-image" / "Dockerfile"
# The files of a model directory that are shipped, in archive order (compiled.npz only exists
# for an hgb model).
SHIPPED: Final = ("metadata.json", "model.joblib", "compiled.npz")
DOCKER_CANDIDATES: Final = ("/usr/bin/docker", "docker")
# Docker clients from this major version on build with BuildKit only through buildx.
BUILDX_REQUIRED_FROM: Final = 23
# The busybox base .ci/image-test bootstraps from the machine's Debian sources.
LOCAL_BUSYBOX: Final = "housing-ci/busybox:bookworm"


class DockerUnusableError(RuntimeError):
    """No Docker client here can build the image; the message says what to do."""


def checked_metadata(model_dir: Path) -> dict[str, Any]:
    """The directory's metadata, once the server's own loader accepts the directory."""
    return load_serving_model(model_dir).metadata


def _run(command: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), capture_output=True, text=True, check=False)


def docker_problem(docker: str) -> str | None:
    """Why `docker` cannot build the modelcar with BuildKit here, or None if it can."""
    version = _run([docker, "version", "--format", "{{.Client.Version}}"])
    major = version.stdout.strip().split(".", 1)[0]
    if not major.isdigit():
        return f"{docker}: cannot read its client version ({version.stderr.strip()[:200]})"
    if int(major) >= BUILDX_REQUIRED_FROM and _run([docker, "buildx", "version"]).returncode:
        return f"{docker}: client {version.stdout.strip()} needs the buildx plugin, not installed"
    server = _run([docker, "version", "--format", "{{.Server.Version}}"])
    if server.returncode:
        return f"{docker}: no Docker daemon answers ({server.stderr.strip()[:200]})"
    return None


def find_docker(candidates: Sequence[str] = DOCKER_CANDIDATES) -> str:
    """The first candidate that can build with BuildKit; DockerUnusableError says why none."""
    problems = []
    for candidate in dict.fromkeys(filter(None, map(shutil.which, candidates))):
        problem = docker_problem(candidate)
        if problem is None:
            return candidate
        problems.append(problem)
    raise DockerUnusableError(
        "no Docker client here can build the model image with BuildKit: "
        + ("; ".join(problems) or f"none of {', '.join(candidates)} is installed")
        + ". Install Debian's docker.io (apt-get install docker.io) or the buildx plugin, "
        "start dockerd, or name a client with MODEL_IMAGE_ARGS=--docker PATH"
    )


def usable_base(docker: str, default: str) -> str | None:
    """The base to build on: None (the Dockerfile's default) when the daemon has it or can
    pull it, else the Debian-bootstrapped busybox if present; DockerUnusableError if neither."""
    if _run([docker, "image", "inspect", default]).returncode == 0:
        return None
    pulled = _run([docker, "pull", default])
    if pulled.returncode == 0:
        return None
    if _run([docker, "image", "inspect", LOCAL_BUSYBOX]).returncode == 0:
        print(f"{default} cannot be pulled here; building on {LOCAL_BUSYBOX}", file=sys.stderr)
        return LOCAL_BUSYBOX
    raise DockerUnusableError(
        f"the base image {default} is not here and cannot be pulled "
        f"({pulled.stderr.strip()[:200]}); give one with sh, [, ls, ln and sleep: "
        f"MODEL_IMAGE_ARGS=--base IMAGE (`make image-test` bootstraps {LOCAL_BUSYBOX})"
    )


def dockerfile_default_base() -> str:
    """The BASE_IMAGE default of deploy/model-image/Dockerfile."""
    for line in MODEL_DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if line.startswith("ARG BASE_IMAGE="):
            return line.split("=", 1)[1].strip()
    raise ValueError(f"{MODEL_DOCKERFILE} has no ARG BASE_IMAGE=...")


def shipped_files(model_dir: Path) -> list[Path]:
    return [model_dir / name for name in SHIPPED if (model_dir / name).is_file()]


def image_labels(metadata: dict[str, Any]) -> dict[str, str]:
    """Build arguments of deploy/model-image/Dockerfile, which turns them into labels."""
    metrics = metadata["metrics_held_out"]
    return {
        "MODEL_VERSION": short_version(str(metadata["model_version"])),
        "MODEL_ESTIMATOR": str(metadata["estimator"]),
        "MODEL_R2": f"{metrics['r2']:.4f}",
        "MODEL_MAE": f"{metrics['mae']:.4f}",
        "MODEL_RMSE": f"{metrics['rmse']:.4f}",
        "MODEL_TRAINED_AT": str(metadata.get("trained_at", "unknown")),
        # Each feature's training deciles, the buckets of the server's drift histogram.
        "MODEL_FEATURE_DECILES": json.dumps(
            metadata.get("drift", {}).get("boundaries"), separators=(",", ":")
        ),
    }


def image_tag(name: str, model_version: str) -> str:
    """`name` if it has a tag, else `name:<the model version as the server names it>`."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:{short_version(model_version)}"


def source_revision() -> str:
    result = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    return result.stdout.strip() or "unknown"


def build_image(
    model_dir: Path, tag: str, base: str | None, docker: str, extra: Sequence[str]
) -> list[str]:
    """The `docker build` command line for the modelcar of `model_dir`."""
    labels = {**image_labels(checked_metadata(model_dir)), "SOURCE_REVISION": source_revision()}
    command = [docker, "build", "--file", str(MODEL_DOCKERFILE), "--tag", tag, *extra]
    if base:
        command += ["--build-arg", f"BASE_IMAGE={base}"]
    for key, value in labels.items():
        command += ["--build-arg", f"{key}={value}"]
    return [*command, str(model_dir)]


def write_archive(model_dir: Path, out: Path) -> Path:
    """A .tar.gz of the shipped files at its root: regular files, mode 0644, owner 0, the
    mtime 0, so the same model always gives the same bytes."""
    checked_metadata(model_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path in shipped_files(model_dir):
            info = tarfile.TarInfo(path.name)
            info.size = path.stat().st_size
            info.mode = 0o644
            info.mtime = 0
            with path.open("rb") as f:
                archive.addfile(info, f)
    with out.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as zipped:
        zipped.write(buffer.getvalue())
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    image = commands.add_parser("image", help="build (and push) the modelcar image")
    image.add_argument("--model_dir", type=Path, required=True)
    image.add_argument("--tag", required=True, help="REPO:TAG or REPO (tag: model version)")
    image.add_argument("--base", help="base image with sh (default: the Dockerfile's busybox)")
    image.add_argument("--docker", default=os.environ.get("DOCKER"), help="default: see above")
    image.add_argument("--network", help="docker build --network, e.g. host")
    image.add_argument("--push", action="store_true", help="docker push the image after")
    archive = commands.add_parser("archive", help="write the storageUri archive")
    archive.add_argument("--model_dir", type=Path, required=True)
    archive.add_argument("--out", type=Path, help="default: dist/housing-model-<version>.tar.gz")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "archive":
        version = str(checked_metadata(args.model_dir)["model_version"])
        out = args.out or Path("dist") / f"housing-model-{short_version(version)}.tar.gz"
        print(write_archive(args.model_dir, out))
        return 0
    tag = image_tag(args.tag, str(checked_metadata(args.model_dir)["model_version"]))
    if tag.endswith(":latest"):
        print("refusing :latest: a model image names its model version", file=sys.stderr)
        return 2
    extra = ["--network", args.network] if args.network else []
    try:
        docker = args.docker or find_docker()
        problem = docker_problem(docker)
        if problem is not None:
            raise DockerUnusableError(problem)
        base = args.base or usable_base(docker, dockerfile_default_base())
    except DockerUnusableError as e:
        print(f"make model-image: {e}", file=sys.stderr)
        return 2
    command = build_image(args.model_dir, tag, base, docker, extra)
    if subprocess.run(command, env={**os.environ, "DOCKER_BUILDKIT": "1"}).returncode:
        print(f"make model-image: `{' '.join(command)}` failed (above)", file=sys.stderr)
        return 1
    if args.push and subprocess.run([docker, "push", tag]).returncode:
        print(
            f"make model-image: `{docker} push {tag}` failed (above): is the registry "
            "logged in (docker login)?",
            file=sys.stderr,
        )
        return 1
    print(tag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
