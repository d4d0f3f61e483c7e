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
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

REPO: Final = Path(__file__).resolve().parents[1]
MODEL_DOCKERFILE: Final = REPO / "deploy" / "model-image" / "Dockerfile"
# The files of a model directory that are shipped, in archive order (compiled.npz only exists
# for an hgb model).
SHIPPED: Final = ("metadata.json", "model.joblib", "compiled.npz")
# Hex digits of the model version the server reports (predictor.model.VERSION_CHARS, which
# this script does not import: importing predictor.model imports kserve).
VERSION_CHARS: Final = 16


def checked_metadata(model_dir: Path) -> dict[str, Any]:
    """The directory's metadata, once the server's own loader accepts the directory."""
    sys.path.insert(0, str(REPO))
    from predictor.artifact import load_serving_model

    return load_serving_model(model_dir).metadata


def shipped_files(model_dir: Path) -> list[Path]:
    return [model_dir / name for name in SHIPPED if (model_dir / name).is_file()]


def image_labels(metadata: dict[str, Any]) -> dict[str, str]:
    """Build arguments of deploy/model-image/Dockerfile, which turns them into labels."""
    metrics = metadata["metrics_held_out"]
    return {
        "MODEL_VERSION": str(metadata["model_version"]),
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
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:{model_version[:VERSION_CHARS]}"


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
    image.add_argument("--docker", default=os.environ.get("DOCKER", "docker"))
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
        out = args.out or Path("dist") / f"housing-model-{version[:VERSION_CHARS]}.tar.gz"
        print(write_archive(args.model_dir, out))
        return 0
    tag = image_tag(args.tag, str(checked_metadata(args.model_dir)["model_version"]))
    if tag.endswith(":latest"):
        print("refusing :latest: a model image names its model version", file=sys.stderr)
        return 2
    extra = ["--network", args.network] if args.network else []
    subprocess.run(
        build_image(args.model_dir, tag, args.base, args.docker, extra),
        check=True,
        env={**os.environ, "DOCKER_BUILDKIT": "1"},
    )
    if args.push:
        subprocess.run([args.docker, "push", tag], check=True)
    print(tag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
