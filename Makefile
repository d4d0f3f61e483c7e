# Every target creates and uses .venv itself: on a fresh clone, `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
MODEL_DIR ?= model
HTTP_PORT ?= 8080
GRPC_PORT ?= 8081
ESTIMATOR ?= hgb
# The raw StatLib file, where this checkout sits next to shared/; empty means scikit-learn's
# fetch_california_housing (needs internet once).
HOUSING_DATA ?= $(wildcard ../shared/data/cal_housing.data)
# Empty: the in-process cache only. E.g. REDIS_URL=redis://127.0.0.1:6379/0
REDIS_URL ?=

RUNTIME_STAMP := $(VENV)/.installed-runtime
DEV_STAMP := $(VENV)/.installed-dev
PERF_STAMP := $(VENV)/.installed-perf
# Every install takes the pins `make constraints` writes: constraints.txt for the package's
# own dependencies (what the image ships), constraints-dev.txt as well for the extras' tools.
# `make test-latest` empties both and upgrades instead (INSTALL_UPGRADE: not PIP_UPGRADE,
# which pip itself would read from the environment make passes on).
RUNTIME_PINS = -c constraints.txt
DEV_PINS = $(RUNTIME_PINS) -c constraints-dev.txt
INSTALL_UPGRADE =
# Extra flags for `make bench` / `make load`, e.g. BENCH_ARGS=--quick LOAD_ARGS="--duration 300"
BENCH_ARGS ?=
LOAD_ARGS ?=
# Extra flags for `make soak`, e.g. SOAK_ARGS="--minutes 10 --rate 300" or SOAK_ARGS=--quick
SOAK_ARGS ?=
# Extra flags for `make original-load`, e.g. ORIGINAL_LOAD_ARGS=--quick or "--modes rtt"
ORIGINAL_LOAD_ARGS ?=

# Where `make model-image` tags the modelcar; with no :TAG the tag is the model version.
MODEL_IMAGE ?= ghcr.io/example/housing-model
# Extra flags for `make model-image`, e.g. MODEL_IMAGE_ARGS="--push" or "--base IMAGE"
MODEL_IMAGE_ARGS ?=

.PHONY: serve train test test-latest lint format clean constraints bench load soak bench-doc \
	load-doc original-load original-load-doc model-image model-archive image-test plan

$(RUNTIME_STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(INSTALL_UPGRADE) $(RUNTIME_PINS) -e .
	touch $@

$(DEV_STAMP): $(RUNTIME_STAMP) constraints-dev.txt
	$(PY) -m pip install -q $(INSTALL_UPGRADE) $(DEV_PINS) -e '.[tests,dev]'
	touch $@

$(PERF_STAMP): $(RUNTIME_STAMP) constraints-dev.txt
	$(PY) -m pip install -q $(INSTALL_UPGRADE) $(DEV_PINS) -e '.[perf]'
	touch $@

$(MODEL_DIR)/model.joblib: | $(RUNTIME_STAMP)
	$(PY) -m predictor.train --model_dir $(MODEL_DIR) --estimator $(ESTIMATOR) \
		$(if $(HOUSING_DATA),--data $(HOUSING_DATA))

serve: $(MODEL_DIR)/model.joblib
	$(PY) -m predictor --model_dir $(MODEL_DIR) --http_port $(HTTP_PORT) --grpc_port $(GRPC_PORT) \
		$(if $(REDIS_URL),--redis_url $(REDIS_URL))

train: | $(RUNTIME_STAMP)
	$(PY) -m predictor.train --model_dir $(MODEL_DIR) --estimator $(ESTIMATOR) \
		$(if $(HOUSING_DATA),--data $(HOUSING_DATA))

# Perf runs write into the ignored perf/results/; only the *-doc targets (and --curate) keep
# a run in docs/results/ and rewrite the tables of docs/performance.md. --quick is refused there.
NEED_WRK := command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
NEED_REDIS := command -v redis-server >/dev/null \
	|| (apt-get update -qq && apt-get install -y -qq redis-server)

# This project against its peers, with wrk (Debian package); writes perf/results/bench-*.
# The server under test runs on one CPU, wrk on another (BENCH_ARGS=--unpinned: shared).
bench: $(MODEL_DIR)/model.joblib $(PERF_STAMP)
	$(NEED_WRK)
	$(PY) -m perf.bench --model_dir $(MODEL_DIR) $(BENCH_ARGS)

# Server CPU time per request (server on core 0, wrk, h2load, k6 and redis-server on core 1)
# against a raw ASGI floor, three windows per target, REST and gRPC ModelInfer; writes
# perf/results/cpu-*. E.g. BENCH_CPU_ARGS=--quick
BENCH_CPU_ARGS ?=
NEED_H2LOAD := command -v h2load >/dev/null \
	|| (apt-get update -qq && apt-get install -y -qq nghttp2-client)
.PHONY: bench-cpu
bench-cpu: $(MODEL_DIR)/model.joblib $(PERF_STAMP)
	$(NEED_WRK)
	$(NEED_REDIS)
	$(NEED_H2LOAD)
	$(PY) -m perf.cpu_bench --model_dir $(MODEL_DIR) $(BENCH_CPU_ARGS)

# The same, kept in docs/results/ and written into docs/performance.md's perf:bench tables.
bench-doc: $(MODEL_DIR)/model.joblib $(PERF_STAMP)
	$(NEED_WRK)
	$(PY) -m perf.bench --model_dir $(MODEL_DIR) --update-docs $(BENCH_ARGS)

# k6 at the original's cache rates against one process and a private redis-server, the server
# on one CPU and k6 and Redis on another (LOAD_ARGS=--unpinned: shared); writes
# perf/results/load-*.
load: $(MODEL_DIR)/model.joblib $(PERF_STAMP)
	$(NEED_REDIS)
	$(PY) -m perf.sweep --model_dir $(MODEL_DIR) $(LOAD_ARGS)

# The same, kept in docs/results/ and written into docs/performance.md's perf:load tables.
load-doc: $(MODEL_DIR)/model.joblib $(PERF_STAMP)
	$(NEED_REDIS)
	$(PY) -m perf.sweep --model_dir $(MODEL_DIR) --update-docs $(LOAD_ARGS)

# Minutes of mixed k6 load while a private redis-server is stopped and restarted twice (not
# part of `make test`); writes perf/results/soak-* (docs/results/ with SOAK_ARGS=--curate).
# Needs the tests extra too: the restarts go through harness/redis_server.py.
soak: $(MODEL_DIR)/model.joblib $(PERF_STAMP) $(DEV_STAMP)
	$(NEED_REDIS)
	$(PY) -m perf.soak --model_dir $(MODEL_DIR) $(SOAK_ARGS)

# The original service's own k6 test (closed model: 100 VUs, 1 min ramp + 5 min hold, each
# iteration GET /health then POST /predict) at its cache rates, as written and with its
# 50 ms client round trip emulated: about an hour. ORIGINAL_LOAD_ARGS=--quick: a minute or two.
# The server on one CPU, k6 and Redis on another (ORIGINAL_LOAD_ARGS=--unpinned: shared).
# Writes perf/results/original-load-*.
original-load: $(MODEL_DIR)/model.joblib $(PERF_STAMP)
	$(NEED_REDIS)
	$(PY) -m perf.original_load --model_dir $(MODEL_DIR) $(ORIGINAL_LOAD_ARGS)

# The same, kept in docs/results/ and written into docs/performance.md's perf:original-load.
original-load-doc: $(MODEL_DIR)/model.joblib $(PERF_STAMP)
	$(NEED_REDIS)
	$(PY) -m perf.original_load --model_dir $(MODEL_DIR) --update-docs $(ORIGINAL_LOAD_ARGS)

# The autoscaling planner (planner/, also `.venv/bin/housing-planner`; docs/autoscaling.md):
# measure one process's capacity with the Redis tier on (a private redis-server), the server
# pinned to one CPU and wrk and Redis to another (skipped when PLAN_CAPACITY names an existing
# capacity.json), recommend scaling settings for the original's
# ramp within PLAN_SLO_MS (with and without scale to zero), and simulate its five cache rates
# with the manifest's and the recommended settings; writes $(PLAN_DIR)/ (ignored).
# E.g. PLAN_CAPACITY=docs/results/autoscale/capacity.json (a kept measurement: ~3 min).
PLAN_DIR ?= perf/results/autoscale
PLAN_CAPACITY ?=
PLAN_SLO_MS ?= 100
PLAN_ISVC ?= deploy/base/inferenceservice.yaml
PLAN_CONFIG ?= knative/config-autoscaler.yaml
PLAN_ARGS ?=
PLAN_USE := $(or $(wildcard $(PLAN_CAPACITY)),$(PLAN_DIR)/capacity.json)
PLAN_SCENARIO = --isvc $(PLAN_ISVC) --config-autoscaler $(PLAN_CONFIG) --capacity $(PLAN_USE)
plan: $(MODEL_DIR)/model.joblib $(PERF_STAMP)
	$(NEED_WRK)
	$(NEED_REDIS)
	$(if $(wildcard $(PLAN_CAPACITY)),,$(PY) -m planner measure --model_dir $(MODEL_DIR) \
		--out $(PLAN_DIR)/capacity.json --work_dir $(PLAN_DIR)/work)
	$(PY) -m planner recommend $(PLAN_SCENARIO) --profile original-open \
		--slo-p99-ms $(PLAN_SLO_MS) --out $(PLAN_DIR)/recommend $(PLAN_ARGS)
	$(PY) -m planner recommend $(PLAN_SCENARIO) --profile original-open \
		--slo-p99-ms $(PLAN_SLO_MS) --keep-scale-to-zero --out $(PLAN_DIR)/recommend-scale-to-zero \
		$(PLAN_ARGS)
	$(PY) -m planner apply $(PLAN_SCENARIO) --profile original-open \
		--recommended $(PLAN_DIR)/recommend/recommendation.json \
		--recommended $(PLAN_DIR)/recommend-scale-to-zero/recommendation.json \
		--out $(PLAN_DIR)/apply $(PLAN_ARGS)

# The planner's own tests (tests/planner/: the Knative port, the simulator, the CLI).
.PHONY: plan-test
plan-test: $(DEV_STAMP) $(PERF_STAMP)
	$(PY) -m pytest tests/planner

# Small requests' latency while hostile clients send large bodies, with large-body
# offloading off and on (not part of `make test`); writes perf/results/fairness-*.
# E.g. FAIRNESS_ARGS=--quick
FAIRNESS_ARGS ?=
.PHONY: fairness
fairness: $(MODEL_DIR)/model.joblib $(PERF_STAMP)
	$(NEED_WRK)
	$(PY) -m perf.fairness --model_dir $(MODEL_DIR) $(FAIRNESS_ARGS)

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check predictor harness planner tests perf scripts
	$(VENV)/bin/ruff format --check predictor harness planner tests perf scripts
	$(VENV)/bin/mypy predictor harness planner

format: $(DEV_STAMP)
	$(VENV)/bin/ruff check --fix predictor harness planner tests perf scripts
	$(VENV)/bin/ruff format predictor harness planner tests perf scripts

# pytest (the 10 slowest tests reported at the end), then the container test, which builds
# two images (~1 GB, tagged for this checkout and removed afterwards) where Docker can run.
# SKIP_IMAGE_TEST=1 leaves the container test out.
SKIP_IMAGE_TEST ?=
test: $(DEV_STAMP) lint
	$(if $(HOUSING_DATA),HOUSING_DATA=$(HOUSING_DATA)) $(PY) -m pytest --durations=10
	@if [ -n "$(SKIP_IMAGE_TEST)" ]; then \
		echo "make test: skipping make image-test (the container test): SKIP_IMAGE_TEST is set"; \
	elif why="$$(.ci/image-test --can-run)"; then $(MAKE) --no-print-directory image-test; \
	else echo "make test: skipping make image-test (the container test): $$why"; fi

# The same suite (lint and pytest, no container test) against the newest versions setup.cfg
# allows, in a venv of its own (.venv-latest), upgraded on every run: what the next
# `make constraints` would bring. Not part of `make test`. First it lists what resolved
# apart from the pins.
LATEST_VENV := .venv-latest
LATEST := VENV=$(LATEST_VENV) RUNTIME_PINS= DEV_PINS= \
	INSTALL_UPGRADE="--upgrade --upgrade-strategy eager"
test-latest:
	rm -f $(LATEST_VENV)/.installed-*
	$(MAKE) --no-print-directory $(LATEST) $(LATEST_VENV)/.installed-dev
	@echo "make test-latest: the versions that differ from the pins (pinned -> installed):"
	@$(LATEST_VENV)/bin/python -m pip freeze --all --exclude-editable \
		| awk -F'==' 'FILENAME != "-" { pin[$$1] = $$2; next } \
			$$1 == "pip" { next } \
			!($$1 in pin) { print "  " $$0 " (not pinned)"; n++; next } \
			pin[$$1] != $$2 { print "  " $$1 " " pin[$$1] " -> " $$2; n++ } \
			END { if (!n) print "  none: the pins are the newest allowed" }' \
			constraints.txt constraints-dev.txt -
	$(MAKE) --no-print-directory $(LATEST) test SKIP_IMAGE_TEST=1

# The model of $(MODEL_DIR) as a KServe modelcar image (storageUri: oci://...), labelled with
# its version and held-out metrics; needs docker with BuildKit.
model-image: $(MODEL_DIR)/model.joblib
	$(PY) scripts/model_artifact.py image --model_dir $(MODEL_DIR) --tag $(MODEL_IMAGE) \
		$(MODEL_IMAGE_ARGS)

# The same files as a .tar.gz for storageUri: s3://, gs:// or https:// (in dist/).
model-archive: $(MODEL_DIR)/model.joblib
	$(PY) scripts/model_artifact.py archive --model_dir $(MODEL_DIR)

# Build the server and model images here (Debian bases via mmdebstrap, dockerd started if
# needed) and run them as a KServe pod would; see .ci/image-test.
image-test: $(DEV_STAMP)
	.ci/image-test $(PY) $(HOUSING_DATA)

# Everything the targets and tools create in the checkout. The MLServer peer's venv lives in
# ~/.cache/housing-predictor/ and is shared by every clone: remove that by hand.
clean:
	rm -rf $(VENV) $(LATEST_VENV) $(MODEL_DIR) .pytest_cache .mypy_cache .ruff_cache .hypothesis
	rm -rf *.egg-info
	rm -rf perf/results perf/.venv-mlserver .ci/tools build dist
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# Re-pin, from one fresh venv, to the newest versions setup.cfg allows: the package alone
# first, frozen into constraints.txt (the runtime set: what the image installs); then the
# tests, dev and perf extras with those pins held, the rest frozen into constraints-dev.txt.
# setuptools is pinned too (grpcio-tools requires it); pip is not.
CONSTRAINTS_VENV := /tmp/housing-constraints-venv
FREEZE := $(CONSTRAINTS_VENV)/bin/pip freeze --all --exclude-editable \
	| grep -v -e '^pip==' -e '^housing-predictor'
constraints:
	rm -rf $(CONSTRAINTS_VENV)
	$(PYTHON) -m venv $(CONSTRAINTS_VENV)
	$(CONSTRAINTS_VENV)/bin/pip install -q --upgrade pip
	$(CONSTRAINTS_VENV)/bin/pip install -q .
	$(FREEZE) > constraints.txt
	$(CONSTRAINTS_VENV)/bin/pip install -q -c constraints.txt '.[tests,dev,perf]'
	$(FREEZE) | grep -vxFf constraints.txt > constraints-dev.txt
	rm -rf $(CONSTRAINTS_VENV)
