"""Spawn mode: the worker starts ComfyUI (the stand-in as main.py), watches it and restarts it.

These run real processes: a crash here is a real exit code or signal.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from comfyui_standin import spawn_mode_env
from handler.errors import ComfyStartFailed
from handler.settings import Settings
from handler.supervisor import ComfyProcess, ComfyState
from handler.worker import Worker
from tests.helpers import decode_error, empty_invert_save


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn_env(tmp_path: Path, **extra: Any) -> dict[str, str]:
    env = {
        **spawn_mode_env(tmp_path, free_port()),
        "COMFYUI_STARTUP_TIMEOUT": "30",
        "RESTART_BACKOFF": "0.05",
        "HEALTH_CHECK_INTERVAL": "0.2",
        "MAX_RESTARTS": "2",
    }
    env.update({k: str(v) for k, v in extra.items()})
    return env


@pytest.fixture
def processes() -> Iterator[list[ComfyProcess]]:
    started: list[ComfyProcess] = []
    try:
        yield started
    finally:
        for proc in started:
            proc.shutdown(timeout=5)


def start(processes: list[ComfyProcess], env: dict[str, str]) -> ComfyProcess:
    comfy = ComfyProcess(Settings.from_env(env))
    processes.append(comfy)
    comfy.start()
    return comfy


def test_comfyui_is_started_echoed_and_noticed_ready(tmp_path: Path, processes: list[ComfyProcess]) -> None:
    comfy = start(processes, spawn_env(tmp_path))
    comfy.ensure_ready()
    assert comfy.state == ComfyState.READY
    assert any("To see the GUI go to" in line for line in comfy.log_tail())
    assert (tmp_path / "io" / "input").is_dir() and (tmp_path / "io" / "output").is_dir()


def test_slow_start_is_waited_for(
    tmp_path: Path, processes: list[ComfyProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STANDIN_BOOT_DELAY_S", "1.5")
    started = time.monotonic()
    comfy = start(processes, spawn_env(tmp_path))
    comfy.ensure_ready()
    assert time.monotonic() - started >= 1.5


def test_exit_while_starting_fails_at_once_with_code_and_log(
    tmp_path: Path, processes: list[ComfyProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STANDIN_EXIT_ON_BOOT", "3")
    comfy = start(processes, spawn_env(tmp_path))
    started = time.monotonic()
    with pytest.raises(ComfyStartFailed) as first:
        comfy.ensure_ready()
    assert time.monotonic() - started < 10
    assert first.value.diagnostics["exit_code"] == 3
    assert first.value.diagnostics["log_tail"]
    assert not first.value.refresh_worker
    # The restart fails the same way; after MAX_RESTARTS=2 the worker asks to be replaced.
    with pytest.raises(ComfyStartFailed) as second:
        comfy.ensure_ready()
    assert second.value.refresh_worker
    assert comfy.state == ComfyState.FAILED


def test_startup_timeout_kills_and_reports(
    tmp_path: Path, processes: list[ComfyProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STANDIN_BOOT_DELAY_S", "30")
    comfy = start(processes, spawn_env(tmp_path, COMFYUI_STARTUP_TIMEOUT=1, MAX_RESTARTS=1))
    with pytest.raises(ComfyStartFailed) as failed:
        comfy.ensure_ready()
    assert failed.value.refresh_worker
    assert "COMFYUI_STARTUP_TIMEOUT" in "\n".join(failed.value.diagnostics["log_tail"])


@pytest.mark.parametrize(
    ("inputs", "described"),
    [({"exit_code": 7, "signal": "none"}, "code 7"), ({"exit_code": 0, "signal": "SIGKILL"}, "SIGKILL")],
)
async def test_crash_mid_job_fails_that_job_and_the_next_one_works(
    tmp_path: Path, processes: list[ComfyProcess], inputs: dict[str, Any], described: str
) -> None:
    env = spawn_env(tmp_path)
    comfy = start(processes, env)
    worker = Worker(Settings.from_env(env), comfy)
    crash = {"1": {"class_type": "StandinCrash", "inputs": {**inputs, "after_seconds": 0.2}}}
    error = decode_error(await worker.run({"id": "crash", "input": {"workflow": crash}}))
    assert error["code"] == "COMFY_CRASHED"
    assert described in error["message"]
    assert error["diagnostics"]["log_tail"], "the crash's last log lines are in the error"
    result = await worker.run({"id": "after", "input": {"workflow": empty_invert_save()}})
    assert "error" not in result, decode_error(result)
    assert comfy.restarts == 1


async def test_a_prompt_that_ignores_interrupt_gets_comfyui_restarted(
    tmp_path: Path, processes: list[ComfyProcess]
) -> None:
    env = spawn_env(tmp_path, INTERRUPT_GRACE=0.5)
    comfy = start(processes, env)
    worker = Worker(Settings.from_env(env), comfy)
    hang = {"1": {"class_type": "StandinHang", "inputs": {}}}
    error = decode_error(await worker.run({"id": "hang", "input": {"workflow": hang, "timeout_s": 0.5}}))
    assert error["code"] == "TIMEOUT"
    result = await worker.run({"id": "after", "input": {"workflow": empty_invert_save()}})
    assert "error" not in result, decode_error(result)
    assert comfy.restarts == 1


async def test_the_job_asks_for_a_new_worker_after_max_restarts(
    tmp_path: Path, processes: list[ComfyProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STANDIN_EXIT_ON_BOOT", "1")
    env = spawn_env(tmp_path, MAX_RESTARTS=2)
    comfy = start(processes, env)
    worker = Worker(Settings.from_env(env), comfy)
    first = await worker.run({"id": "a", "input": {"workflow": empty_invert_save()}})
    assert decode_error(first)["code"] == "COMFY_START_FAILED"
    assert "refresh_worker" not in first
    second = await worker.run({"id": "b", "input": {"workflow": empty_invert_save()}})
    assert decode_error(second)["code"] == "COMFY_START_FAILED"
    assert second["refresh_worker"] is True
    assert "exited with code 1" in decode_error(second)["message"]
