"""The Grafana dashboard imports cleanly, as far as can be told without a Grafana: a valid
dashboard model, and PromQL that parses and names only metrics a real server exposes (or
Knative's autoscaler does)."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import promql_parser
import pytest

from harness.server import REPO, ServerProcess
from tests.test_drift_rules import recorded_metrics

DASHBOARD_PATH = REPO / "deploy" / "grafana" / "housing-predictor.json"
# Knative Serving's autoscaler metrics, as its Prometheus exporter names them (one series
# per revision, labelled namespace_name, configuration_name, revision_name, service_name).
KNATIVE_METRICS = {"autoscaler_actual_pods", "autoscaler_desired_pods", "autoscaler_panic_mode"}
# Grafana's own variables, which it replaces before a query reaches Prometheus.
GRAFANA_INTERVALS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
SERIES_SUFFIXES = {
    "counter": ("",),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("", "_count", "_sum"),
}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD_PATH.read_text())
    return document


@pytest.fixture(scope="module")
def exposed_metrics(server: ServerProcess) -> set[str]:
    """Every series name the server's /metrics declares (by its `# TYPE` lines, which a
    labelled metric has before its first observation)."""
    text = httpx.get(f"{server.base_url}/metrics", timeout=30.0).text
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.MULTILINE):
        names.update(name + suffix for suffix in SERIES_SUFFIXES.get(kind, ("",)))
    return names


def all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    panels = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL query: panel targets and the selectors of query variables."""
    exprs = [t["expr"] for p in all_panels(dashboard) for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((.+), *\w+\)", variable["definition"])
            assert match, f"variable {variable['name']}: expected label_values(selector, label)"
            exprs.append(match.group(1))
    return exprs


def as_prometheus_sees_it(expr: str) -> str:
    for variable, value in GRAFANA_INTERVALS.items():
        expr = expr.replace(variable, value)
    return expr


def metric_names(expr: str) -> set[str]:
    names: set[str] = set()

    def visit(node: Any, *_: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            names.add(node.name)
        return True

    promql_parser.walk(promql_parser.parse(as_prometheus_sees_it(expr)), visit)
    return names


def test_is_a_dashboard_model(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] and dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    assert "id" not in dashboard or dashboard["id"] is None  # Grafana assigns it on import
    ids = [panel["id"] for panel in all_panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in all_panels(dashboard):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]


def test_every_panel_queries_the_prometheus_variable(dashboard: dict[str, Any]) -> None:
    [datasource] = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert datasource["query"] == "prometheus"
    expected = {"type": "prometheus", "uid": f"${{{datasource['name']}}}"}
    for panel in all_panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == expected, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        assert all(target["expr"].strip() for target in panel["targets"]), panel["title"]


def test_variables_used_are_defined(dashboard: dict[str, Any]) -> None:
    defined = {v["name"] for v in dashboard["templating"]["list"]}
    texts = queries(dashboard) + [panel["title"] for panel in all_panels(dashboard)]
    texts += [panel.get("repeat", "") and f"${panel['repeat']}" for panel in all_panels(dashboard)]
    used = set(re.findall(r"\$\{?(\w+)", " ".join(texts))) - {
        v.strip("$") for v in GRAFANA_INTERVALS
    }
    assert used <= defined, f"undefined variables: {used - defined}"


def test_queries_parse_and_name_only_exposed_metrics(
    dashboard: dict[str, Any], exposed_metrics: set[str]
) -> None:
    named = set()
    for expr in queries(dashboard):
        named |= metric_names(expr)  # raises ValueError when the PromQL does not parse
    unknown = named - exposed_metrics - KNATIVE_METRICS - recorded_metrics()
    assert not unknown, f"not exposed by the server nor recorded: {sorted(unknown)}"
    # The panels the dashboard exists for.
    assert {
        "housing_request_seconds_bucket",
        "housing_request_seconds_count",
        "housing_cache_hits_total",
        "housing_redis_errors_total",
        "housing_redis_breaker_state",
        "housing_model_seconds_bucket",
        "autoscaler_actual_pods",
        "housing_feature_value_bucket",
        "housing:feature_psi:1h",
    } <= named


@pytest.mark.parametrize(
    "expr",
    ["sum(rate(housing_request_seconds_count[5m]", "rate(housing_request_seconds_count)"],
)
def test_a_broken_query_is_caught(expr: str) -> None:
    with pytest.raises(ValueError):
        metric_names(expr)
