#!/usr/bin/env bash
set -euo pipefail
# Build the predictor (server) image, push it, and print the digest to pin in deploy/overlays/prod.
# The image holds no model: ship one with `make model-image` (scripts/model_artifact.py).
#
#   IMAGE=ghcr.io/acme/housing-predictor TAG=0.1.0 scripts/build_and_push.sh
#
# IMAGE  repository to push to (default: ghcr.io/example/housing-predictor, the manifests')
# TAG    image tag (default: the current git commit, short)
# PLATFORM   target platform (default: linux/amd64)
# CA_BUNDLE  a CA bundle for pip to trust during the build (behind a TLS-inspecting proxy)
# Needs docker with BuildKit and a login to the registry (docker login).

IMAGE="${IMAGE:-ghcr.io/example/housing-predictor}"
TAG="${TAG:-$(git rev-parse --short HEAD)}"
PLATFORM="${PLATFORM:-linux/amd64}"

if [[ "${TAG}" == "latest" ]]; then
  echo "refusing TAG=latest: pin a version the manifests can name" >&2
  exit 2
fi

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ref="${IMAGE}:${TAG}"

secret=()
if [[ -n "${CA_BUNDLE:-}" ]]; then
  secret=(--secret "id=ca-bundle,src=${CA_BUNDLE}")
fi
DOCKER_BUILDKIT=1 docker build \
  --platform "${PLATFORM}" \
  "${secret[@]}" \
  --tag "${ref}" \
  "${repo_root}"
docker push "${ref}"

# The registry's digest of what was just pushed ("repo@sha256:…"); an image pushed to several
# repositories has one per repository, so pick ours.
digest="$(docker inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "${ref}" \
  | grep -m 1 "^${IMAGE}@sha256:")"
echo "pushed ${ref}"
echo "digest ${digest}"
echo "pin it in deploy/overlays/prod/kustomization.yaml:"
echo "  images:"
echo "    - name: ghcr.io/example/housing-predictor"
echo "      newName: ${IMAGE}"
echo "      digest: ${digest#*@}"
