#!/usr/bin/env bash
set -euo pipefail
# Build the predictor image, push it, and print the digest to pin in overlays/prod.
#
#   IMAGE=ghcr.io/acme/housing-predictor TAG=0.1.0 scripts/build_and_push.sh
#
# IMAGE  repository to push to (default: ghcr.io/example/housing-predictor, the manifests')
# TAG    image tag (default: the current git commit, short)
# ESTIMATOR  model to train into the image: hgb (default) or svr
# PLATFORM   target platform (default: linux/amd64)
# Needs docker and a login to the registry (docker login). The build downloads the
# California-housing data set to train the model, so the build machine needs internet.

IMAGE="${IMAGE:-ghcr.io/example/housing-predictor}"
TAG="${TAG:-$(git rev-parse --short HEAD)}"
ESTIMATOR="${ESTIMATOR:-hgb}"
PLATFORM="${PLATFORM:-linux/amd64}"

if [[ "${TAG}" == "latest" ]]; then
  echo "refusing TAG=latest: pin a version the manifests can name" >&2
  exit 2
fi

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ref="${IMAGE}:${TAG}"

docker build \
  --platform "${PLATFORM}" \
  --build-arg "ESTIMATOR=${ESTIMATOR}" \
  --tag "${ref}" \
  "${repo_root}"
docker push "${ref}"

# The registry's digest of what was just pushed ("repo@sha256:…"); an image pushed to several
# repositories has one per repository, so pick ours.
digest="$(docker inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "${ref}" \
  | grep -m 1 "^${IMAGE}@sha256:")"
echo "pushed ${ref}"
echo "digest ${digest}"
echo "pin it in overlays/prod/kustomization.yaml:"
echo "  images:"
echo "    - name: ghcr.io/example/housing-predictor"
echo "      newName: ${IMAGE}"
echo "      digest: ${digest#*@}"
