"""Settings: one declaration each, set by flag or environment, checked against kserve's parser.

Unit tests of `parse_settings` (the environment set with monkeypatch), then the real server:
`--help`, a bad value, a server configured by environment alone, TLS, gRPC's message bounds.
"""

from __future__ import annotations

import argparse
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from kserve import InferInput, InferRequest

from harness.payloads import sample_row, sample_rows
from harness.scripts import load_script
from harness.server import REPO, free_port, spawn_server, start_server
from predictor.protocol.schema import FEATURES
from predictor.settings import GROUPS, Settings
from predictor.settings_cli import env_names, flag_of, parse_settings
from tests.test_bad_input import grpc_infer

PASSWORD = "s3cret-pw"
# This server's defaults for kserve's flags where they differ from kserve's, on purpose.
OUR_DEFAULTS = {"model_name": "housing", "enable_docs_url": True, "enable_latency_logging": False}
# kserve's flags that do nothing in this server (a transformer's, or logging set up by file,
# which the project's own logging replaces): not offered.
NOT_OFFERED = {
    "predictor_host", "protocol", "predictor_protocol", "predictor_use_ssl",
    "predictor_request_timeout_seconds", "predictor_request_retries",
    "enable_predictor_health_check", "configure_logging", "log_config_file",
}  # fmt: skip


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting leaks in from the environment the tests run in."""
    for name in Settings.model_fields:
        for variable in env_names(name):
            monkeypatch.delenv(variable, raising=False)


def test_the_model_directory_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_settings([])
    assert "--model_dir / HOUSING_MODEL_DIR: Field required" in capsys.readouterr().err


def settings(*flags: str) -> Settings:
    return parse_settings(["--model_dir", "m", *flags])


def refusal(capsys: pytest.CaptureFixture[str], *flags: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        settings(*flags)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


# -- parsing ------------------------------------------------------------------------------


def test_defaults_are_the_declared_ones() -> None:
    parsed = settings()
    assert parsed.max_batch_size == 1000 and parsed.max_inflight == 256
    assert parsed.model_name == "housing" and parsed.enable_docs_url is True
    assert parsed.enable_latency_logging is False and parsed.log_level == "INFO"
    assert parsed.limits.header_timeout_seconds == 5 and parsed.limits.max_headers == 128
    assert parsed.cache.redis_url is None and parsed.cache.redis_timeout_seconds == 0.05
    assert parsed.enable_model_repository is False and parsed.unloaded_liveness_seconds == 10
    assert parsed.model_wait == 0.0  # no MODEL_INIT_MODE=async: nothing to wait for


def test_a_flag_beats_housing_variables_which_beat_the_names_others_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://legacy:6379/0")
    assert settings().redis_url == "redis://legacy:6379/0"
    monkeypatch.setenv("HOUSING_REDIS_URL", "redis://prefixed:6379/0")
    assert settings().redis_url == "redis://prefixed:6379/0"
    assert settings("--redis_url", "redis://flag:6379/0").redis_url == "redis://flag:6379/0"
    monkeypatch.setenv("HOUSING_MAX_INFLIGHT", "64")
    assert settings().max_inflight == 64
    assert settings("--max_inflight", "32").max_inflight == 32
    monkeypatch.setenv("HOUSING_REDIS_URL", "")  # empty: as if unset
    assert settings().redis_url == "redis://legacy:6379/0"


def test_every_setting_has_a_flag_and_a_variable_except_the_secrets_and_kserves_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env_only = {name for name, info in Settings.model_fields.items() if not _cli(name)}
    assert env_only == {"redis_password", "model_init_mode"}
    values = {
        "max_batch_size": ("7", 7), "log_format": ("text", "text"),
        "enable_grpc": ("false", False), "redis_ttl_jitter": ("0.5", 0.5),
        "event_loop": ("asyncio", "asyncio"), "timeout_keep_alive": ("30", 30),
        "log_level": ("debug", "DEBUG"), "model_wait_seconds": ("3", 3.0),
    }  # fmt: skip
    for name, (text, value) in values.items():
        for variable in env_names(name):
            monkeypatch.setenv(variable, text)
            assert getattr(settings(), name) == value, variable
            monkeypatch.delenv(variable)
        assert getattr(settings(flag_of(name), text), name) == value


def test_kserves_names_and_the_manifests_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_PASSWORD", PASSWORD)
    monkeypatch.setenv("REDIS_CLUSTER", "true")
    monkeypatch.setenv("CACHE_SIGNING_KEY", "k" * 32)
    monkeypatch.setenv("KSERVE_LOGLEVEL", "warning")
    monkeypatch.setenv("MODEL_INIT_MODE", "async")
    parsed = settings("--model_wait_seconds", "30", "--event_loop", "uvloop")
    assert parsed.cache.redis_password == PASSWORD and parsed.cache.redis_cluster is True
    assert parsed.cache.signing_key == b"k" * 32 and parsed.log_level == "WARNING"
    assert parsed.model_wait == 30.0 and parsed.event_loop == "uvloop"
    assert PASSWORD not in repr(parsed) and "kkkk" not in repr(parsed)
    assert PASSWORD not in repr(parsed.cache) and "kkkk" not in repr(parsed.cache)
    assert settings("--event-loop", "asyncio", "--timeout-keep-alive", "9").event_loop == "asyncio"


def test_cache_and_connection_views() -> None:
    parsed = settings(
        "--redis_url", "rediss://cache:6380/1", "--redis_timeout_ms", "20",
        "--redis_breaker_failures", "4", "--redis_policy", "auto", "--max_headers", "64",
        "--header_timeout_seconds", "2", "--cache_size", "10",
    )  # fmt: skip
    assert parsed.cache.redis_url == "rediss://cache:6380/1"
    assert parsed.cache.redis_timeout_seconds == pytest.approx(0.02)
    assert parsed.cache.redis_breaker_failures == 4 and parsed.cache.redis_policy == "auto"
    assert parsed.cache.local_max_entries == 10
    assert parsed.limits.max_headers == 64 and parsed.limits.header_timeout_seconds == 2
    assert parsed.http_port == 8080 and parsed.workers == 1


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--max_inflight", "0"],
         "--max_inflight / HOUSING_MAX_INFLIGHT: Input should be greater than 0"),
        (["--body_timeout_seconds", "-1"], "greater than 0, got '-1'"),
        (["--redis_ttl_jitter", "1"], "less than 1"),
        (["--response_cache_size", "-1"], "greater than or equal to 0"),
        (["--workers", "2"], "must be 1: scale out with replicas instead"),
        (["--max_batch_size", "many"], "valid integer"),
        (["--enable_grpc", "maybe"], "valid boolean"),
        (["--redis_policy", "sometimes"], "invalid choice"),
        (["--cache_signing_key", "short"], "at least 16 characters"),
        (["--no_such_flag", "1"], "unrecognized arguments: --no_such_flag"),
        (["--redis_password", "x"], "unrecognized arguments: --redis_password"),
        (["--predictor_host", "x"], "unrecognized arguments: --predictor_host"),
    ],
)  # fmt: skip
def test_a_bad_value_is_refused_naming_the_flag_and_its_variables(
    capsys: pytest.CaptureFixture[str], flags: list[str], says: str
) -> None:
    assert says in refusal(capsys, *flags)


@pytest.mark.parametrize(
    "url",
    [
        "http://:hunter2@cache:6379/0",
        "redis://:hunter2@cache:port/0",
        "redis:///0",
        "redis+sentinel://:hunter2@10.0.0.1/housing",  # no port
        "redis+sentinel://:hunter2@10.0.0.1:26379/",  # no service
    ],
)
def test_a_bad_redis_url_is_refused_without_showing_the_password(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    error = refusal(capsys, "--redis_url", url)
    assert "--redis_url / HOUSING_REDIS_URL / REDIS_URL" in error and "hunter2" not in error
    monkeypatch.setenv("REDIS_URL", url)
    error = refusal(capsys)
    assert "HOUSING_REDIS_URL / REDIS_URL" in error and "hunter2" not in error


def test_a_short_signing_key_is_refused_without_showing_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CACHE_SIGNING_KEY", "tiny-secret")
    error = refusal(capsys)
    assert "CACHE_SIGNING_KEY" in error and "tiny-secret" not in error


# -- against kserve's parser --------------------------------------------------------------


def kserve_parser() -> argparse.ArgumentParser:
    import kserve.model_server

    parser: argparse.ArgumentParser = kserve.model_server.parser
    return parser


def test_kserves_flags_are_offered_with_kserves_spelling_and_defaults() -> None:
    """Each kserve flag is either a setting (same spelling, same default unless this server
    sets its own on purpose) or one that does nothing here; a flag a new kserve adds fails
    this test until it is sorted into one or the other."""
    kserves = kserve_parser()._actions
    for action in kserves:
        if action.dest in NOT_OFFERED:
            continue
        assert action.dest in Settings.model_fields, f"kserve's {action.option_strings}"
        assert flag_of(action.dest) in action.option_strings
        ours = Settings.model_fields[action.dest].default
        if action.dest in OUR_DEFAULTS:
            assert ours == OUR_DEFAULTS[action.dest] != action.default
        elif action.dest in ("ssl_certfile", "ssl_keyfile"):
            # kserve's default is its variable's value at import; ours reads the same one.
            assert ours is None and env_names(action.dest)[1].startswith("KSERVE_TLS_")
        else:
            assert ours == action.default, action.dest
    assert {action.dest for action in kserves} >= NOT_OFFERED


def test_help_lists_what_applies_with_true_defaults() -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "predictor", "--help"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    took = time.monotonic() - started
    text = " ".join(done.stdout.split())
    for title in GROUPS.values():
        assert title in text
    for name in Settings.model_fields:
        if _cli(name):
            assert flag_of(name) in text and env_names(name)[0] in text, name
    for name in NOT_OFFERED:
        assert f"--{name}" not in text
    assert "--redis_password" not in text and "HOUSING_REDIS_PASSWORD" not in text
    assert "Serve Swagger UI at /docs (bundled; no CDN). [default: true;" in text
    assert "[default: housing; env: HOUSING_MODEL_NAME]" in text
    assert "[default: 120.0; env: HOUSING_MODEL_WAIT_SECONDS]" in text
    assert "Trained model directory. [required; env: HOUSING_MODEL_DIR]" in text
    print(f"--help answered in {took:.2f} s")


def test_a_bad_value_stops_the_server_before_it_loads_anything(model_dir: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "predictor", "--model_dir", str(model_dir)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOUSING_MAX_INFLIGHT": "-3"},
    )  # fmt: skip
    assert done.returncode == 2
    assert "HOUSING_MAX_INFLIGHT: Input should be greater than 0, got '-3'" in done.stderr
    assert "Traceback" not in done.stderr


# -- the real server ------------------------------------------------------------------------


def test_a_server_configured_by_environment_alone(model_dir: Path) -> None:
    env = {
        "HOUSING_MODEL_DIR": str(model_dir),
        "HOUSING_MAX_BATCH_SIZE": "2",
        "HOUSING_ENABLE_DOCS_URL": "false",
        "HOUSING_ENABLE_GRPC": "false",
    }
    with start_server([], env=env) as server:
        rows = sample_rows()
        assert len(rows) > 2
        refused = httpx.post(f"{server.base_url}/predict", json=rows[:3], timeout=30)
        assert refused.status_code == 422 and "error" in refused.json()
        assert httpx.get(f"{server.base_url}/docs", timeout=30).status_code == 404
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", server.grpc_port), timeout=5).close()
    with start_server([], env={**env, "HOUSING_ENABLE_DOCS_URL": "true"}) as server:
        assert httpx.get(f"{server.base_url}/docs", timeout=30).status_code == 200
    # A flag wins over the environment.
    with start_server(["--max_batch_size", "3"], env=env) as server:
        answer = httpx.post(f"{server.base_url}/predict", json=rows[:3], timeout=30)
        assert answer.status_code == 200, answer.text


def test_tls_from_kserves_flags(model_dir: Path, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    trust = ssl.create_default_context(cafile=str(cert))
    args = ["--model_dir", str(model_dir), "--ssl_certfile", str(cert)]
    server = spawn_server(args, env={"KSERVE_TLS_KEY_FILE": str(key)}, http_port=free_port())
    try:
        url = f"https://127.0.0.1:{server.http_port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                ready = httpx.get(f"{url}/v2/health/ready", verify=trust, timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.process.poll() is None, server.log()[-3000:]
            assert time.monotonic() < deadline, server.log()[-3000:]
            time.sleep(0.2)
        answer = httpx.post(f"{url}/predict", json=[sample_row()], verify=trust, timeout=30)
        assert answer.status_code == 200 and answer.json()["prediction"][0] > 0
        with pytest.raises(httpx.TransportError):  # plain HTTP is not served
            httpx.get(f"http://127.0.0.1:{server.http_port}/v2/health/ready", timeout=5)
    finally:
        server.stop()
        server.log_path.unlink(missing_ok=True)


def test_grpc_message_bounds_apply(model_dir: Path) -> None:
    row = np.array([[sample_row()[f] for f in FEATURES]], dtype=np.float64)

    def request(rows: int) -> InferRequest:
        tensor = InferInput("input-0", [rows, len(FEATURES)], "FP64")
        tensor.set_data_from_numpy(np.repeat(row, rows, axis=0))
        return InferRequest(model_name="housing", infer_inputs=[tensor])

    args = ["--model_dir", str(model_dir), "--grpc_max_receive_message_length", "4096"]
    with start_server(args) as server:
        assert len(grpc_infer(server, request(10))) == 10  # 640 bytes of values
        with pytest.raises(grpc.RpcError) as refused:
            grpc_infer(server, request(100))  # 6,400 bytes
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def _cli(name: str) -> bool:
    extra = Settings.model_fields[name].json_schema_extra
    assert isinstance(extra, dict)
    return bool(extra["cli"])


def test_the_settings_page_is_current() -> None:
    settings_doc = load_script("settings_doc")
    assert settings_doc.main(["--check"]) == 0, "run .venv/bin/python scripts/settings_doc.py"
    for name in Settings.model_fields:
        assert f"`{env_names(name)[0]}`" in settings_doc.DOC.read_text()
