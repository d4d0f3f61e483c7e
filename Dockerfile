# housing-predictor: the KServe custom predictor, without a model. The model is its own
# artifact (deploy/model-image/, `make model-image`), which KServe presents at /mnt/models
# from the InferenceService's storageUri: a new model is a new model image, not a new server.
#
#   DOCKER_BUILDKIT=1 docker build [--build-arg PYTHON_IMAGE=IMAGE] \
#       [--secret id=ca-bundle,src=CA_FILE] [--network host] -t IMAGE:TAG .
#
# PYTHON_IMAGE: the official python image below (pinned by digest, so a rebuild gets the same
#   OS and Python; bump it on purpose), or any Debian bookworm image with python3.11 and its
#   venv module (e.g. one bootstrapped with mmdebstrap, as `make image-test` does). Only
#   `python3` and the venv's own python are used: Debian's python3.11 has no bare `python`.
# ca-bundle (BuildKit secret, optional): the CA bundle pip trusts during the build instead of
#   its own, for builds behind a TLS-inspecting proxy. It never reaches a layer.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

# --- build: the package and its pinned dependencies in a venv -------------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python3 -m venv /opt/venv

WORKDIR /src
# setup.cfg reads README.md as the long description, so it is part of the build context.
# constraints.txt pins every runtime dependency (regenerate it with `make constraints`).
COPY pyproject.toml setup.cfg README.md constraints.txt ./
COPY predictor/ predictor/
# pip's cache lives in a BuildKit cache mount (not in the image), so a rebuild after a code
# change downloads nothing.
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=secret,id=ca-bundle,target=/run/secrets/ca-bundle \
    if [ -s /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
    && /opt/venv/bin/python -m pip install --constraint constraints.txt . \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib

# --- runtime: the venv on the same base, nothing else ----------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# An account for UID 1000 so libraries that look the user up (getpass, pwd) work; its home
# is /tmp, the only writable place (Kubernetes mounts an emptyDir there).
RUN useradd --no-log-init --uid 1000 --user-group --home-dir /tmp --no-create-home \
    --shell /usr/sbin/nologin predictor

COPY --from=build /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

USER 1000:1000
WORKDIR /tmp
# 8080: HTTP (V1, V2, /predict, /metrics); 8081: gRPC (KServe V2).
EXPOSE 8080 8081

# /mnt/models: where KServe puts the model of storageUri (a modelcar's /models through a
# symlink, or the storage initializer's download); nothing is there in this image.
ENTRYPOINT ["/opt/venv/bin/python", "-m", "predictor"]
CMD ["--model_dir", "/mnt/models", "--model_name", "housing"]
