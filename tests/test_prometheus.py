"""Every query of the Grafana dashboard, run by a real Prometheus against a real server.

Debian's `prometheus` scrapes one server every second, with the `namespace` and `pod` labels
Kubernetes service discovery would add, while a little traffic goes through every route, a
few requests fail validation, and the server's private Redis is killed part-way (so the Redis
error, skip and breaker series exist). Then each panel query, with Grafana's variables filled
in as Grafana would, goes through Prometheus's HTTP API and must return at least one series.
Excepted: the panels and the variable that read Knative's autoscaler metrics
(`KNATIVE_ONLY`), which only a cluster has.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from harness.payloads import sample_row
from harness.redis_server import RedisServer
from harness.server import ServerProcess, free_port, start_server
from tests.test_dashboard import (
    DASHBOARD_PATH,
    KNATIVE_METRICS,
    all_panels,
    metric_names,
)
from tests.test_drift_rules import write_rules

PROMETHEUS: Final = "/usr/bin/prometheus"
NAMESPACE: Final = "housing-test"
POD: Final = "housing-predictor-00001-deployment-5d9c7b8f4-x2x7q"
# Grafana's interval variables for a 1 s scrape: $__rate_interval is at least 4 scrapes.
INTERVALS: Final = {"$__rate_interval": "15s", "$__interval": "1s", "$__range": "1m"}
# Panels (and the template variable) that only Knative's autoscaler feeds.
KNATIVE_ONLY: Final = {"Replicas (Knative)", "Autoscaler panic mode", "$configuration"}
SAMPLE_ROW: Final = sample_row()


@pytest.fixture(scope="module")
def prometheus_binary() -> str:
    if shutil.which(PROMETHEUS) is None:
        pytest.skip(
            "Debian's prometheus is not installed (apt-get install prometheus; .ci/run does)"
        )
    return PROMETHEUS


def row(i: int) -> dict[str, float]:
    """A row no earlier call gave (for i < 10**6): a miss in every cache tier."""
    return {**SAMPLE_ROW, "MedInc": 1.0 + i * 1e-6}


def traffic(base_url: str, seconds: float, start: int) -> None:
    """Hits and misses on every REST route, identical concurrent misses (coalesced), and
    requests that fail validation, for `seconds`."""
    deadline = time.monotonic() + seconds
    i = start
    with httpx.Client(base_url=base_url, timeout=10.0) as client, ThreadPoolExecutor(4) as pool:
        while time.monotonic() < deadline:
            i += 1
            fresh = [row(i * 7 + k) for k in range(3)]
            list(pool.map(lambda _, rows=fresh: client.post("/predict", json=rows), range(4)))
            client.post("/predict", json=[SAMPLE_ROW])
            client.post("/v1/models/housing:predict", json={"instances": [row(i)]})
            flat = [float(v) for v in row(i + 1).values()]
            tensor = {"name": "input-0", "shape": [1, 8], "datatype": "FP64", "data": flat}
            client.post("/v2/models/housing/infer", json={"inputs": [tensor]})
            client.post("/predict", json=[{**SAMPLE_ROW, "MedInc": -1}])
            time.sleep(0.05)


@pytest.fixture(scope="module")
def scraped(
    prometheus_binary: str, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, float]]:
    """(Prometheus URL, evaluation time) after a scraped run with a Redis that dies."""
    work = tmp_path_factory.mktemp("prometheus")
    redis = RedisServer(work)
    redis.start()
    args = ["--model_dir", str(model_dir), "--redis_url", redis.url]
    with start_server(args) as server:
        rules = write_rules(work / "rules.yml", window="15s")
        url, process = start_prometheus(prometheus_binary, work, {NAMESPACE: server}, rules)
        try:
            traffic(server.base_url, 8.0, 0)
            redis.kill()  # errors, then the breaker opens and operations are skipped
            traffic(server.base_url, 6.0, 100_000)
            time.sleep(2.5)  # two more scrapes
            yield url, time.time()
        finally:
            process.terminate()
            process.wait(30)


def start_prometheus(
    binary: str, work: Path, servers: dict[str, ServerProcess], rules: Path | None = None
) -> tuple[str, subprocess.Popen[bytes]]:
    """Prometheus scraping each server every second as a pod of its namespace (the keys),
    evaluating `rules` if given."""
    port = free_port()
    config: dict[str, Any] = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "housing",
                "static_configs": [
                    {
                        "targets": [f"127.0.0.1:{server.http_port}"],
                        "labels": {"namespace": namespace, "pod": POD},
                    }
                    for namespace, server in servers.items()
                ],
            }
        ],
    }
    if rules is not None:
        config["rule_files"] = [str(rules)]
    (work / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    log = (work / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            targets = httpx.get(f"{url}/api/v1/targets", timeout=2).json()["data"]
            if [t["health"] for t in targets["activeTargets"]] == ["up"] * len(servers):
                return url, process
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        if process.poll() is not None:
            break
        time.sleep(0.2)
    process.terminate()
    raise AssertionError(
        f"prometheus did not scrape the server: {(work / 'prometheus.log').read_text()[-3000:]}"
    )


def evaluate(url: str, at: float, expr: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/api/v1/query", params={"query": expr, "time": at}, timeout=10)
    body = response.json()
    assert body.get("status") == "success", (expr, body)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def fill_in(expr: str, variables: dict[str, str]) -> str:
    for name, value in {**INTERVALS, **variables}.items():
        expr = expr.replace(name, value)
    return expr


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD_PATH.read_text())
    return document


def test_every_panel_query_returns_data(
    scraped: tuple[str, float], dashboard: dict[str, Any]
) -> None:
    url, at = scraped
    # What Grafana's variables become: "All" for namespace (a regex), a route it lists.
    routes = evaluate(
        url, at, f'group by (route) (housing_request_seconds_count{{namespace="{NAMESPACE}"}})'
    )
    assert {r["metric"]["route"] for r in routes} >= {"legacy", "v1", "v2"}
    variables = {
        "$namespace": ".*",
        "$route": "legacy",
        "$configuration": ".*",
        "$feature": "MedInc",
    }
    empty, checked, excepted = [], 0, set()
    for panel in all_panels(dashboard):
        for target in panel.get("targets", []):
            if panel["title"] in KNATIVE_ONLY:
                assert metric_names(target["expr"]) <= KNATIVE_METRICS, panel["title"]
                excepted.add(panel["title"])
                continue
            checked += 1
            if not evaluate(url, at, fill_in(target["expr"], variables)):
                empty.append(f"{panel['title']}: {target['expr']}")
    assert empty == [], "panel queries without data:\n" + "\n".join(empty)
    assert excepted == KNATIVE_ONLY - {"$configuration"}
    assert checked >= 20


def test_every_variable_query_lists_values(
    scraped: tuple[str, float], dashboard: dict[str, Any]
) -> None:
    url, at = scraped
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query" or f"${variable['name']}" in KNATIVE_ONLY:
            continue
        match = re.fullmatch(r"label_values\((.+), *(\w+)\)", variable["definition"])
        assert match, variable["name"]
        selector, label = match.groups()
        found = evaluate(url, at, fill_in(selector, {"$namespace": ".*"}))
        assert found and all(label in series["metric"] for series in found), variable["name"]
    # The namespace variable lists the label the scrape added, as Kubernetes SD adds it.
    namespaces = evaluate(url, at, "group by (namespace) (housing_request_seconds_count)")
    assert [n["metric"]["namespace"] for n in namespaces] == [NAMESPACE]


def test_an_absent_metric_is_reported_empty(scraped: tuple[str, float]) -> None:
    """The check above can fail: a misspelt metric gives no data."""
    url, at = scraped
    assert evaluate(url, at, "sum(rate(housing_request_second_count[15s]))") == []
