"""Read a revision's scaling settings from an InferenceService (or a Knative Service) YAML.

The file may hold several documents (`kubectl kustomize deploy/overlays/prod` output): the first
InferenceService is used, else the first Knative Service. KServe turns the predictor's
`minReplicas`, `maxReplicas`, `scaleMetric` and `scaleTarget` into the Knative revision's
`min-scale`, `max-scale`, `metric` and `target` annotations, `containerConcurrency` and
`timeout` into the revision spec, and copies the InferenceService's and the predictor's
`annotations` onto the revision; unset `minReplicas` means 1 (KServe's default).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Final

import yaml

from harness.durations import parse_go_duration
from planner.knative import AutoscalerConfig, Revision, format_duration

PREFIX: Final = "autoscaling.knative.dev/"
KSERVE_DEFAULT_MIN_REPLICAS: Final = 1
_DURATIONS: Final = {
    "window": "window_s",
    "scale-down-delay": "scale_down_delay_s",
    "scale-to-zero-pod-retention-period": "scale_to_zero_pod_retention_period_s",
}
_FLOATS: Final = {
    "target": "target",
    "target-utilization-percentage": "target_utilization_percentage",
    "panic-window-percentage": "panic_window_percentage",
    "panic-threshold-percentage": "panic_threshold_percentage",
    "target-burst-capacity": "target_burst_capacity",
}
_INTS: Final = {
    "min-scale": "min_scale",
    "max-scale": "max_scale",
    "initial-scale": "initial_scale",
    "activation-scale": "activation_scale",
}
# The older spellings Knative still accepts.
_ALIASES: Final = {
    "minScale": "min-scale",
    "maxScale": "max-scale",
    "initialScale": "initial-scale",
}


@dataclass(frozen=True)
class Manifest:
    name: str
    kind: str
    revision: Revision


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if isinstance(doc, dict)]


def read_manifest(path: Path) -> Manifest:
    documents = load_documents(path)
    for kind in ("InferenceService", "Service"):
        for doc in documents:
            if doc.get("kind") == kind and _api_group(doc) in (
                "serving.kserve.io",
                "serving.knative.dev",
            ):
                return Manifest(doc["metadata"]["name"], kind, revision_of(doc))
    raise SystemExit(f"{path}: no InferenceService or Knative Service in it")


def _api_group(doc: Mapping[str, Any]) -> str:
    return str(doc.get("apiVersion", "")).split("/")[0]


def revision_of(doc: Mapping[str, Any]) -> Revision:
    """The `Revision` settings of one InferenceService or Knative Service document."""
    annotations: dict[str, str] = dict(doc.get("metadata", {}).get("annotations") or {})
    values: dict[str, Any] = {}
    if doc["kind"] == "InferenceService":
        predictor = doc["spec"]["predictor"]
        annotations.update(predictor.get("annotations") or {})
        min_replicas = predictor.get("minReplicas", KSERVE_DEFAULT_MIN_REPLICAS)
        annotations[PREFIX + "min-scale"] = str(min_replicas)
        if predictor.get("maxReplicas"):
            annotations[PREFIX + "max-scale"] = str(predictor["maxReplicas"])
        if "scaleMetric" in predictor:
            annotations[PREFIX + "metric"] = str(predictor["scaleMetric"])
        if "scaleTarget" in predictor:
            annotations[PREFIX + "target"] = str(predictor["scaleTarget"])
        spec = predictor
        timeout = predictor.get("timeout")
    else:
        template = doc["spec"]["template"]
        annotations.update(template.get("metadata", {}).get("annotations") or {})
        spec = template.get("spec", {})
        timeout = spec.get("timeoutSeconds")
    values["container_concurrency"] = int(spec.get("containerConcurrency") or 0)
    if timeout is not None:
        values["timeout_s"] = float(timeout)
    for key, raw in annotations.items():
        if not key.startswith(PREFIX):
            continue
        name = _ALIASES.get(key.removeprefix(PREFIX), key.removeprefix(PREFIX))
        text = str(raw)
        if name == "metric":
            values["metric"] = text
        elif name in _DURATIONS:
            values[_DURATIONS[name]] = parse_go_duration(text)
        elif name in _FLOATS:
            values[_FLOATS[name]] = float(text)
        elif name in _INTS:
            values[_INTS[name]] = int(text)
    return Revision(**values)


def read_config_autoscaler(path: Path | None) -> AutoscalerConfig:
    """Knative's defaults, overridden by a `config-autoscaler` ConfigMap file if given."""
    if path is None:
        return AutoscalerConfig()
    for doc in load_documents(path):
        if doc.get("kind") == "ConfigMap":
            data = {k: str(v) for k, v in (doc.get("data") or {}).items() if k != "_example"}
            return AutoscalerConfig.from_data(data)
    raise SystemExit(f"{path}: no ConfigMap in it")


def settings_to_set(revision: Revision) -> dict[str, str]:
    """How to write `revision` in an InferenceService predictor: fields and annotations."""
    out: dict[str, str] = {}
    out["minReplicas"] = str(revision.min_scale if revision.min_scale is not None else 1)
    if revision.max_scale:
        out["maxReplicas"] = str(revision.max_scale)
    out["scaleMetric"] = revision.metric
    if revision.target is not None:
        out["scaleTarget"] = f"{revision.target:g}"
    out["containerConcurrency"] = str(revision.container_concurrency)
    reverse = {v: k for k, v in {**_DURATIONS, **_FLOATS, **_INTS}.items()}
    for field in fields(revision):
        name = field.name
        value = getattr(revision, name)
        if value is None or name not in reverse or reverse[name] in ("target", "min-scale"):
            continue
        if name == "max_scale":
            continue
        text = format_duration(value) if name in _DURATIONS.values() else f"{value:g}"
        out[PREFIX + reverse[name]] = text
    return out
