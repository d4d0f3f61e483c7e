"""The built images, run the way a KServe pod runs them (`make image-test` builds them first).

One "pod" per module, from the InferenceService's own container spec: a pause container holds
the shared process namespace (`shareProcessNamespace: true`, as KServe sets for a modelcar);
the `modelcar-init` check runs first; then the server container starts with the manifest's
args, CPU and memory limits and security context (read-only root, UID 1000, no capabilities,
no-new-privileges, a tmpfs /tmp), an emptyDir at /mnt and MODEL_INIT_MODE=async; then the
`modelcar` sidecar runs KServe's own command, which makes /mnt/models a symlink to its /models
through /proc/<pid>/root. Nothing is bind-mounted from the host but the empty /mnt: the
server reads the model out of the model image, as in the pod. Every container uses the host
network (the server on a free port) or none.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
import numpy as np
import pytest
import yaml

from harness.payloads import sample_rows
from harness.server import REPO, free_port
from predictor.model.artifact import load_serving_model, short_version
from predictor.protocol.schema import FEATURES

DOCKER: Final = os.environ.get("DOCKER", "/usr/bin/docker")
SERVER_IMAGE: Final = os.environ.get("HOUSING_SERVER_IMAGE", "")
MODEL_IMAGE: Final = os.environ.get("HOUSING_MODEL_IMAGE", "")
PAUSE_IMAGE: Final = os.environ.get("HOUSING_PAUSE_IMAGE", MODEL_IMAGE)
MODEL_DIR: Final = os.environ.get("HOUSING_IMAGE_MODEL_DIR", "")
RESULTS: Final = os.environ.get("IMAGE_TEST_RESULTS", "")
SAMPLE: Final = sample_rows()

# The commands KServe's webhook gives the modelcar containers (pkg/utils/storage.go,
# CreateModelcarInitContainer and modelcarCommand), after Kubernetes turns `$$` into `$`.
MODELCAR_INIT: Final = (
    "echo 'Pre-fetching modelcar: ' && [ -d /models ] && [ \"$(ls -A /models)\" ] "
    "&& echo 'OK ... Prefetched and valid (/models exists)' "
    "|| (echo 'NOK ... Prefetched but modelcar is invalid' && exit 1)"
)
MODELCAR: Final = "ln -sf /proc/$$/root/models /mnt/models && sleep infinity"
READY_TIMEOUT_SECONDS: Final = 120.0

pytestmark = pytest.mark.skipif(
    not (SERVER_IMAGE and MODEL_IMAGE),
    reason="container test: run by `make image-test`, which builds the images with Docker",
)


def docker(*args: str, check: bool = True, timeout: float = 120.0) -> str:
    result = subprocess.run(
        [DOCKER, *args], capture_output=True, text=True, check=False, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout.strip()


def quantity_bytes(text: str) -> int:
    """A Kubernetes memory quantity (1Gi, 768Mi, 512M) in bytes."""
    match = re.fullmatch(r"(\d+)([KMGT]i?)?", text)
    assert match, text
    number, unit = int(match.group(1)), match.group(2) or ""
    base = 1024 if unit.endswith("i") else 1000
    return number * base ** ("KMGT".index(unit[0]) + 1 if unit else 0)


def manifest_container() -> dict[str, Any]:
    isvc = yaml.safe_load((REPO / "inferenceservice.yaml").read_text(encoding="utf-8"))
    container: dict[str, Any] = isvc["spec"]["predictor"]["containers"][0]
    return container


@dataclass
class Pod:
    server: str
    modelcar: str
    http_port: int
    probes: dict[str, dict[str, Any]]
    timings: dict[str, float]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def exec_python(self, code: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [DOCKER, "exec", self.server, "/opt/venv/bin/python", "-c", code],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )


def wait_for(url: str, deadline: float, server: str) -> float:
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code == 200:
                return time.monotonic()
        if docker("inspect", "--format", "{{.State.Running}}", server) != "true":
            raise AssertionError(f"server container exited:\n{docker('logs', server)[-4000:]}")
        time.sleep(0.02)
    raise AssertionError(f"not ready: {url}\n{docker('logs', server, check=False)[-4000:]}")


def manifest_flags(args: list[str]) -> dict[str, str]:
    """A container's args as flags: `--name value` pairs and `--name=value` single items."""
    flags, items = {}, iter(args)
    for item in items:
        name, equals, value = item.partition("=")
        flags[name] = value if equals else next(items)
    return flags


@pytest.fixture(scope="module")
def pod() -> Iterator[Pod]:
    container = manifest_container()
    http_port, grpc_port = free_port(), free_port()
    flags = manifest_flags(container["args"])
    flags.update({"--http_port": str(http_port), "--grpc_port": str(grpc_port)})
    args = [item for pair in flags.items() for item in pair]
    limits = container["resources"]["limits"]
    tmp_size = "128m"
    name = f"housing-image-test-{os.getpid()}"
    names = [f"{name}-pause", f"{name}-server", f"{name}-modelcar"]
    empty_dir = Path(tempfile.mkdtemp(prefix="housing-emptydir-"))
    empty_dir.chmod(0o777)  # as the kubelet makes an emptyDir
    hardened = ["--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
    try:
        docker(
            "run", "--rm", "--network", "none", *hardened, MODEL_IMAGE, "sh", "-c", MODELCAR_INIT
        )
        docker("run", "-d", "--name", names[0], "--network", "none", *hardened, PAUSE_IMAGE,
               "sleep", "infinity")  # fmt: skip
        pid = ["--pid", f"container:{names[0]}"]
        started = time.monotonic()
        docker(
            "run", "-d", "--name", names[1], "--network", "host", *pid, *hardened,
            "--user", f"{container['securityContext']['runAsUser']}:"
            f"{container['securityContext']['runAsGroup']}",
            "--tmpfs", f"/tmp:rw,size={tmp_size}",
            "--cpus", str(limits["cpu"]), "--memory", str(quantity_bytes(limits["memory"])),
            "--volume", f"{empty_dir}:/mnt",
            "--env", "MODEL_INIT_MODE=async", "--env", "REDIS_URL=",
            SERVER_IMAGE, *args,
        )  # fmt: skip
        docker("run", "-d", "--name", names[2], "--network", "none", *pid, *hardened,
               "--volume", f"{empty_dir}:/mnt", MODEL_IMAGE, "sh", "-c", MODELCAR)  # fmt: skip
        deadline = started + READY_TIMEOUT_SECONDS
        readiness = container["readinessProbe"]["httpGet"]["path"]
        ready = wait_for(f"http://127.0.0.1:{http_port}{readiness}", deadline, names[1])
        answer = httpx.post(f"http://127.0.0.1:{http_port}/predict", json=SAMPLE, timeout=30.0)
        answered = time.monotonic()
        assert answer.status_code == 200, answer.text
        probes = {k: container[k] for k in ("readinessProbe", "livenessProbe")}
        timings = {
            "start_to_ready_s": ready - started,
            "start_to_first_answer_s": answered - started,
        }
        yield Pod(names[1], names[2], http_port, probes, timings)
    finally:
        for container_name in reversed(names):
            docker("rm", "--force", container_name, check=False)
        # The modelcar's symlink, owned by UID 1000; the directory itself is ours.
        for entry in empty_dir.iterdir():
            entry.unlink()
        empty_dir.rmdir()


def test_model_is_read_through_the_modelcars_root(pod: Pod) -> None:
    found = pod.exec_python("import os; print(os.readlink('/mnt/models'))")
    assert re.fullmatch(r"/proc/\d+/root/models", found.stdout.strip()), found
    writes = pod.exec_python("open('/mnt/models/x', 'w')")
    assert writes.returncode != 0 and ("Read-only" in writes.stderr or "denied" in writes.stderr)


def test_model_image_labels_name_the_shipped_model() -> None:
    if not MODEL_DIR:
        pytest.skip("HOUSING_IMAGE_MODEL_DIR not given: nothing to compare with")
    metadata = json.loads((Path(MODEL_DIR) / "metadata.json").read_text())
    labels = json.loads(
        docker("image", "inspect", "--format", "{{json .Config.Labels}}", MODEL_IMAGE)
    )
    # One form of the model version everywhere a user sees it: the served one (16 hex).
    version = short_version(metadata["model_version"])
    assert labels["org.opencontainers.image.version"] == version
    assert labels["com.example.housing.model.version"] == version
    deciles = json.loads(labels["com.example.housing.model.feature-deciles"])
    assert deciles == metadata["drift"]["boundaries"]
    for metric in ("r2", "mae", "rmse"):
        value = float(labels[f"com.example.housing.model.{metric}"])
        assert value == pytest.approx(metadata["metrics_held_out"][metric], abs=1e-4)


def test_every_route_passes_the_smoke_test(pod: Pod) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "smoke.py"), pod.base_url],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_answers_are_the_shipped_models(pod: Pod) -> None:
    answer = httpx.post(f"{pod.base_url}/predict", json=SAMPLE, timeout=30.0)
    if not MODEL_DIR:
        pytest.skip("HOUSING_IMAGE_MODEL_DIR not given: nothing to compare with")
    served = load_serving_model(Path(MODEL_DIR))
    rows = [[float(item[f]) for f in FEATURES] for item in SAMPLE]
    assert answer.json()["prediction"] == served.regressor.predict(np.array(rows)).tolist()
    assert answer.headers["X-Model-Version"] == short_version(served.version)


def test_the_manifests_probes_pass(pod: Pod) -> None:
    for name, probe in pod.probes.items():
        timeout = float(probe.get("timeoutSeconds", 1))
        response = httpx.get(f"{pod.base_url}{probe['httpGet']['path']}", timeout=timeout)
        assert response.status_code == 200, (name, response.status_code)


def test_runs_unprivileged_on_a_read_only_root(pod: Pod) -> None:
    found = pod.exec_python(
        "import os, pathlib\n"
        "status = dict(l.split(':\\t', 1) for l in open('/proc/self/status').read().splitlines())\n"
        "print(os.getuid(), os.getgid(), status['CapEff'].strip(), status['NoNewPrivs'].strip())\n"
        "pathlib.Path('/tmp/ok').write_text('x')\n"
        "assert not os.path.exists('/run/secrets/ca-bundle')\n"
        "try:\n    pathlib.Path('/opt/venv/x').write_text('x')\nexcept OSError as e:\n"
        "    print(e.errno)\n"
    )
    assert found.returncode == 0, found.stderr
    ids, errno = found.stdout.splitlines()
    assert ids.split() == ["1000", "1000", "0000000000000000", "1"]
    assert errno == "30"  # EROFS


def test_sigterm_stops_it_with_exit_code_0(pod: Pod) -> None:
    docker("kill", "--signal", "TERM", pod.server)
    assert docker("wait", pod.server, timeout=60) == "0", docker("logs", pod.server)[-2000:]


def test_write_results(pod: Pod) -> None:
    """Image sizes and the cold start, for docs/performance.md (not asserted: timings)."""
    sizes = {
        image: int(docker("image", "inspect", "--format", "{{.Size}}", image))
        for image in (SERVER_IMAGE, MODEL_IMAGE)
    }
    results = {
        "images_bytes": sizes,
        "cold_start": pod.timings,
        "builds_s": json.loads(os.environ.get("IMAGE_TEST_BUILDS", "{}")),
        "load_average": os.getloadavg(),
    }
    print(json.dumps(results, indent=2))
    if RESULTS:
        Path(RESULTS).parent.mkdir(parents=True, exist_ok=True)
        Path(RESULTS).write_text(json.dumps(results, indent=2) + "\n")
