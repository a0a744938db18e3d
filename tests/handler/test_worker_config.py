"""Environment settings the worker honours: EXECUTION_TIMEOUT, CLEANUP_AGE, configuration errors."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from comfyui_standin import StandinComfyUI
from handler.cleanup import sweep, sweep_roots
from handler.settings import Settings, SettingsError
from tests.conftest import make_worker
from tests.helpers import decode_error


async def test_execution_timeout_is_the_default_limit(standin: StandinComfyUI) -> None:
    worker = make_worker(standin, EXECUTION_TIMEOUT=0.4)
    started = time.monotonic()
    error = decode_error(
        await worker.run(
            {
                "id": "j",
                "input": {"workflow": {"1": {"class_type": "StandinSleep", "inputs": {"seconds": 20}}}},
            }
        )
    )
    assert error["code"] == "TIMEOUT"
    assert time.monotonic() - started < 1.4


def test_cleanup_sweep_removes_only_old_job_files(tmp_path: Path) -> None:
    inputs, outputs, temp = tmp_path / "input", tmp_path / "output", tmp_path / "temp"
    old_in = inputs / "runpod-jobs" / "old"
    new_out = outputs / "runpod-jobs" / "new"
    user_file = inputs / "keep.png"
    for folder in (old_in, new_out, temp):
        folder.mkdir(parents=True)
    user_file.write_bytes(b"x")
    (temp / "preview.png").write_bytes(b"x")
    hour_ago = time.time() - 3600
    os.utime(old_in, (hour_ago, hour_ago))
    os.utime(temp / "preview.png", (hour_ago, hour_ago))
    removed = sweep(sweep_roots(inputs, outputs, temp), max_age_s=600)
    assert removed == 2
    assert not old_in.exists() and not (temp / "preview.png").exists()
    assert new_out.exists() and user_file.exists()


async def test_the_worker_sweeps_after_jobs(standin: StandinComfyUI) -> None:
    stale = standin.input_dir / "runpod-jobs" / "killed-job"
    stale.mkdir(parents=True)
    (stale / "a.png").write_bytes(b"x")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    worker = make_worker(standin, CLEANUP_AGE=3600)
    await worker.run(
        {"id": "j", "input": {"workflow": {"1": {"class_type": "StandinSleep", "inputs": {"seconds": 0}}}}}
    )
    assert not stale.exists()


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"COMFYUI_PORT": "eighty"}, "COMFYUI_PORT"),
        ({"EXECUTION_TIMEOUT": "soon"}, "EXECUTION_TIMEOUT"),
        ({"OUTPUT_MODE": "ftp"}, "OUTPUT_MODE"),
        ({"BUCKET_ENDPOINT_URL": "http://s3"}, "BUCKET_ACCESS_KEY_ID"),
        ({"COMFYUI_TEMP_DIR": "/tmp/x"}, "COMFYUI_TEMP_DIR"),
        ({"ALLOW_PRIVATE_INPUT_URLS": "maybe"}, "ALLOW_PRIVATE_INPUT_URLS"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(env)


def test_spawn_mode_command_line_matches_the_image() -> None:
    settings = Settings.from_env({"COMFYUI_IO_ROOT": "/io", "COMFYUI_EXTRA_ARGS": "--fast --cpu"})
    assert settings.comfyui_command()[1:] == [
        "main.py",
        "--listen",
        "127.0.0.1",
        "--port",
        "8188",
        "--disable-auto-launch",
        "--disable-metadata",
        "--input-directory",
        "/io/input",
        "--output-directory",
        "/io/output",
        "--temp-directory",
        "/io",
        "--fast",
        "--cpu",
    ]
