"""The drift PrometheusRule (deploy/components/drift-alerts): manifest and rules, by promtool.

No Prometheus Operator CRD is at hand offline, so the manifest is checked against a strict
schema of the operator's PrometheusRule API written here (monitoring.coreos.com/v1: groups
of `record` or `alert` rules), its metadata as other manifests' are, and rendered through
kustomize with the prod overlay, as an overlay would use the component. `promtool check
rules` parses every expression; `promtool test rules` feeds synthetic
histograms from two pods and compares the recorded PSI with the formula computed here, and
the alert with what should fire: a shifted feature with enough rows (after its 30 minutes),
not a feature served as trained, not a shifted one with too few rows.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Final

import jsonschema
import pytest
import yaml

from harness.server import REPO
from harness.system_tools import require_tool
from tests.k8s_strict_schema import errors, metadata_validator

COMPONENT: Final = REPO / "deploy" / "components" / "drift-alerts"
RULE_PATH: Final = COMPONENT / "prometheus-rule.yaml"
PROMTOOL: Final = "/usr/bin/promtool"
PSI_RECORD: Final = "housing:feature_psi:1h"
ALERT: Final = "HousingInputDrift"
FLOOR: Final = 1e-4
# Three buckets (le 1, 2, +Inf) trained at these shares; rows per minute per bucket per pod.
UPPERS: Final = ("1", "2", "+Inf")
LOWERS: Final = ("-Inf", "1", "2")
TRAINED: Final = (0.25, 0.5, 0.25)
FEEDS: Final = {
    "MedInc": {"a": (10, 20, 10), "b": (10, 20, 10)},  # as trained
    "HouseAge": {"a": (0, 0, 40), "b": (20, 10, 10)},  # shifted, pods differ
    "AveRooms": {"a": (0, 40, 0), "b": (0, 40, 0)},  # two empty buckets: the floor
    "Population": {"a": (0, 0, 4), "b": (0, 0, 4)},  # shifted, under 1000 rows an hour
}
LABELS: Final = {"namespace": "housing", "model_version": "v1"}


_STRINGS: Final = {"type": "object", "additionalProperties": {"type": "string"}}
_DURATION: Final = {"type": "string", "pattern": r"^((\d+)(ms|s|m|h|d|w|y))+$"}
# The operator's PrometheusRuleSpec (v1), strict: a typo such as `expression` is an error.
PROMETHEUS_RULE_SCHEMA: Final = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "groups": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "interval": _DURATION,
                            "query_offset": _DURATION,
                            "limit": {"type": "integer"},
                            "partial_response_strategy": {"type": "string"},
                            "labels": _STRINGS,
                            "rules": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["expr"],
                                    "additionalProperties": False,
                                    "oneOf": [{"required": ["record"]}, {"required": ["alert"]}],
                                    "properties": {
                                        "record": {"type": "string"},
                                        "alert": {"type": "string"},
                                        "expr": {"type": "string"},
                                        "for": _DURATION,
                                        "keep_firing_for": _DURATION,
                                        "labels": _STRINGS,
                                        "annotations": _STRINGS,
                                    },
                                },
                            },
                        },
                    },
                }
            },
        },
    },
}


def rule_document() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(RULE_PATH.read_text())
    return document


def recorded_metrics() -> set[str]:
    """The series the rules record (the dashboard may query them)."""
    groups = rule_document()["spec"]["groups"]
    return {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}


def write_rules(path: Path, window: str | None = None, hold: str | None = None) -> Path:
    """The PrometheusRule's groups as a Prometheus rule file. For a Prometheus fed for
    seconds: `window` replaces the 1h rate window (and rules run every second), `hold` the
    alert's 30 minutes."""
    groups = rule_document()["spec"]["groups"]
    for group in groups:
        if window is not None:
            group["interval"] = "1s"
        for rule in group["rules"]:
            if window is not None:
                rule["expr"] = rule["expr"].replace("[1h]", f"[{window}]")
            if hold is not None and "for" in rule:
                rule["for"] = hold
    path.write_text(yaml.safe_dump({"groups": groups}))
    return path


def psi(actual: list[float], expected: list[float]) -> float:
    """The population stability index, both shares floored as the rules floor them."""
    total = sum(actual)
    return sum(
        (max(a / total, FLOOR) - max(e, FLOOR)) * math.log(max(a / total, FLOOR) / max(e, FLOOR))
        for a, e in zip(actual, expected, strict=True)
    )


def expected_psi(feature: str) -> float:
    per_pod = FEEDS[feature].values()
    return psi([float(sum(bucket)) for bucket in zip(*per_pod, strict=True)], list(TRAINED))


def series(name: str, labels: dict[str, str]) -> str:
    inner = ",".join(f'{key}="{value}"' for key, value in labels.items())
    return f"{name}{{{inner}}}"


def input_series() -> list[dict[str, str]]:
    out = []
    for feature, pods in FEEDS.items():
        for pod, rows in pods.items():
            cumulative = 0
            for upper, lower, step, share in zip(UPPERS, LOWERS, rows, TRAINED, strict=True):
                cumulative += step
                labels = {**LABELS, "pod": pod, "feature": feature, "le": upper}
                out.append(
                    {
                        "series": series("housing_feature_value_bucket", labels),
                        "values": f"0+{cumulative}x70",
                    }
                )
                out.append(
                    {
                        "series": series(
                            "housing_feature_training_share", {**labels, "previous_le": lower}
                        ),
                        "values": f"{share}x70",
                    }
                )
    return out


def fired(feature: str) -> dict[str, Any]:
    value = expected_psi(feature)
    return {
        "exp_labels": {**LABELS, "feature": feature, "severity": "warning"},
        "exp_annotations": {
            "summary": f"{feature} inputs no longer look like the training data",
            "description": (
                f"Over the last hour the served {feature} values of model v1 in housing have "
                f"a PSI of {value:.2f} against the training split (alert above 0.2 for 30 "
                "minutes). See the Grafana dashboard's Drift row for which deciles moved."
            ),
            "runbook": "docs/monitoring.md in the housing-predictor repository",
        },
    }


@pytest.fixture(scope="module")
def promtool() -> str:
    if shutil.which(PROMTOOL) is None:
        pytest.skip("Debian's prometheus (promtool) is not installed (.ci/run installs it)")
    return PROMTOOL


def test_manifest_matches_the_prometheus_rule_api() -> None:
    document = rule_document()
    validator = jsonschema.Draft202012Validator(PROMETHEUS_RULE_SCHEMA)
    assert list(errors(validator, document)) == []
    assert list(errors(metadata_validator(), document["metadata"])) == []
    broken = {**document, "spec": {"groups": [{"name": "g", "rules": [{"expression": "1"}]}]}}
    assert {path for path, _ in errors(validator, broken)} == {"$.spec.groups[0].rules[0]"}


def test_component_renders_into_an_overlay(tmp_path: Path) -> None:
    """The component on top of an overlay (prod) renders, beside its manifests, in the
    namespace the including kustomization sets."""
    kubectl = require_tool("kubectl", "to render the component (its built-in kustomize)")
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "namespace": "housing-prod",
                # kustomize takes other kustomizations by relative path only.
                "resources": [os.path.relpath(REPO / "deploy" / "overlays" / "prod", tmp_path)],
                "components": [os.path.relpath(COMPONENT, tmp_path)],
            }
        )
    )
    rendered = subprocess.run(
        [kubectl, "kustomize", str(tmp_path)], capture_output=True, text=True, check=True
    ).stdout
    docs = list(yaml.safe_load_all(rendered))
    [rule] = [doc for doc in docs if doc["kind"] == "PrometheusRule"]
    assert rule["metadata"]["namespace"] == "housing-prod"
    assert {"InferenceService", "DomainMapping"} <= {doc["kind"] for doc in docs}
    assert rule["spec"] == rule_document()["spec"]


def test_rules_parse(promtool: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [promtool, "check", "rules", str(write_rules(tmp_path / "rules.yml"))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def promtool_test(
    promtool: str, tmp_path: Path, case: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    """`promtool test rules` on the rules and one test case over `input_series()`."""
    write_rules(tmp_path / "rules.yml")
    tests = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": input_series(), **case}],
    }
    (tmp_path / "drift_test.yml").write_text(yaml.safe_dump(tests))
    return subprocess.run(
        [promtool, "test", "rules", "drift_test.yml"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )


def test_rules_compute_psi_and_alert(promtool: str, tmp_path: Path) -> None:
    psi_samples = [
        {"labels": series(PSI_RECORD, {**LABELS, "feature": f}), "value": expected_psi(f)}
        for f in FEEDS
    ]
    assert psi_samples[0]["value"] == 0.0  # served as trained
    assert expected_psi("HouseAge") == pytest.approx(0.8634693, abs=1e-6)
    assert expected_psi("AveRooms") > 4  # the floor keeps an empty bucket finite
    case = {
        "promql_expr_test": [{"expr": PSI_RECORD, "eval_time": "45m", "exp_samples": psi_samples}],
        "alert_rule_test": [
            {"eval_time": "20m", "alertname": ALERT, "exp_alerts": []},
            {
                "eval_time": "45m",
                "alertname": ALERT,
                "exp_alerts": [fired("HouseAge"), fired("AveRooms")],
            },
        ],
    }
    result = promtool_test(promtool, tmp_path, case)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_wrong_expectation_fails(promtool: str, tmp_path: Path) -> None:
    """promtool really compares: a PSI of 0 for the shifted feature is refused."""
    labels = series(PSI_RECORD, {**LABELS, "feature": "HouseAge"})
    case = {
        "promql_expr_test": [
            {
                "expr": f'{PSI_RECORD}{{feature="HouseAge"}}',
                "eval_time": "45m",
                "exp_samples": [{"labels": labels, "value": 0}],
            }
        ]
    }
    result = promtool_test(promtool, tmp_path, case)
    assert result.returncode != 0 and "HouseAge" in result.stdout + result.stderr
