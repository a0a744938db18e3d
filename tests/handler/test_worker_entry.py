"""The worker started exactly as the image starts it: ``python -u handler/handler.py``."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.handler.test_supervisor import spawn_env
from tests.helpers import COMFYUI_STARTING, empty_invert_save, run_in_repo, worker_process


def run_worker(tmp_path: Path, job_input: dict[str, object]) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-u", "handler/handler.py", "--test_input", json.dumps({"input": job_input})]
    return run_in_repo(args, {**os.environ, **spawn_env(tmp_path)})


def job_result(stdout: str) -> dict[str, object]:
    line = next(line for line in stdout.splitlines() if "Job result:" in line)
    result: dict[str, object] = ast.literal_eval(line.split("Job result:", 1)[1].strip())
    return result


def test_worker_runs_a_test_input_like_the_image(tmp_path: Path) -> None:
    done = run_worker(tmp_path, {"workflow": empty_invert_save()})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "[ComfyUI]" in done.stdout, "ComfyUI's log is echoed into the worker log"
    assert "model inventory" in done.stdout
    assert "comfy-runpod: ready for jobs at" in done.stdout
    output = job_result(done.stdout)["output"]
    assert isinstance(output, dict)
    [image] = output["outputs"]
    assert image["filename"] == "inverted_00001_.png"


def test_worker_exits_1_with_the_structured_error(tmp_path: Path) -> None:
    done = run_worker(tmp_path, {"workflow": {"1": {"class_type": "NoSuchNode", "inputs": {}}}})
    assert done.returncode == 1
    assert "VALIDATION_FAILED" in done.stdout


def test_comfyui_dies_with_the_worker_process_group(tmp_path: Path) -> None:
    """RunPod (or the local endpoint) stops a worker by its process group, even with SIGKILL."""
    import signal
    import time

    with worker_process({**os.environ, **spawn_env(tmp_path)}) as worker:
        comfy_pid = None
        assert worker.stdout is not None
        for line in worker.stdout:
            match = COMFYUI_STARTING.search(line)
            comfy_pid = int(match.group(1)) if match else comfy_pid
            if "ready for jobs at" in line:
                break
        assert comfy_pid is not None
        os.killpg(worker.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(comfy_pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(comfy_pid, signal.SIGKILL)
    raise AssertionError("ComfyUI outlived its worker")
