"""KServe's async model init (MODEL_INIT_MODE=async, set for modelcars): the server waits for
a model directory that appears after it starts, and gives up after --model_wait_seconds."""

from __future__ import annotations

import time
from pathlib import Path

from harness.server import spawn_server
from predictor.model.wait import wait_for_model_dir

ASYNC = {"MODEL_INIT_MODE": "async", "REDIS_URL": ""}


def test_server_waits_for_a_model_dir_that_appears_later(model_dir: Path, tmp_path: Path) -> None:
    """As in a pod: /mnt/models becomes a symlink to the modelcar's /models after start."""
    mount = tmp_path / "models"
    server = spawn_server(["--model_dir", str(mount)], env=ASYNC)
    try:
        time.sleep(3.0)  # imports done, the server is polling for the directory
        assert server.process.poll() is None, server.log()
        mount.symlink_to(model_dir, target_is_directory=True)
        server.wait_ready()
        assert "Loaded model housing" in server.log()
    finally:
        assert server.stop() == 0
        server.log_path.unlink(missing_ok=True)


def test_server_gives_up_after_the_wait(tmp_path: Path) -> None:
    server = spawn_server(
        ["--model_dir", str(tmp_path / "never"), "--model_wait_seconds", "1"], env=ASYNC
    )
    try:
        assert server.process.wait(60) == 2
        assert "No model in" in server.log() and "does not exist" in server.log()
    finally:
        server.log_path.unlink(missing_ok=True)


def test_without_async_mode_a_missing_model_fails_at_once(tmp_path: Path) -> None:
    server = spawn_server(["--model_dir", str(tmp_path / "never")], env={"REDIS_URL": ""})
    try:
        assert server.process.wait(60) == 2
        assert "No model in" not in server.log()
    finally:
        server.log_path.unlink(missing_ok=True)


def test_wait_polls_until_the_metadata_is_there(tmp_path: Path) -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds
        if now[0] >= 1.0:
            (tmp_path / "metadata.json").write_text("{}")

    assert wait_for_model_dir(tmp_path, 5.0, clock=lambda: now[0], sleep=sleep)
    assert 1.0 <= now[0] < 1.1
    (tmp_path / "metadata.json").unlink()
    now[0] = 0.0

    def tick(seconds: float) -> None:
        now[0] += seconds

    assert not wait_for_model_dir(tmp_path, 0.5, clock=lambda: now[0], sleep=tick)
    assert 0.5 <= now[0] < 0.6
