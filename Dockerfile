# housing-predictor: KServe custom predictor with a baked-in California-housing model.
#
#   docker build -t IMAGE:TAG .            (scripts/build_and_push.sh wraps this)
#
# The base is pinned by digest so a rebuild gets the same OS and Python; bump it on purpose.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

# --- build: install the package into a venv and train the model ------------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# setup.cfg reads README.md as the long description, so it is part of the build context.
# constraints.txt pins every runtime dependency (regenerate it with `make constraints`).
COPY pyproject.toml setup.cfg README.md constraints.txt ./
COPY predictor/ predictor/
RUN pip install --no-cache-dir --constraint constraints.txt . \
    && python -m compileall -q /opt/venv/lib

# Training fetches the data set from the internet (scikit-learn's fetch_california_housing),
# which a build machine has; the serving image never does.
ARG ESTIMATOR=hgb
RUN python -m predictor.train --model_dir /mnt/models --estimator "${ESTIMATOR}"

# --- runtime: the venv and the model, nothing else ------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# An account for UID 1000 so libraries that look the user up (getpass, pwd) work; its home
# is /tmp, the only writable place (Kubernetes mounts an emptyDir there).
RUN useradd --no-log-init --uid 1000 --user-group --home-dir /tmp --no-create-home \
    --shell /usr/sbin/nologin predictor

COPY --from=build /opt/venv /opt/venv
COPY --from=build /mnt/models /mnt/models

ENV PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

USER 1000:1000
WORKDIR /tmp
# 8080: HTTP (V1, V2, /predict, /metrics); 8081: gRPC (KServe V2).
EXPOSE 8080 8081

ENTRYPOINT ["python", "-m", "predictor"]
CMD ["--model_dir", "/mnt/models", "--model_name", "housing"]
