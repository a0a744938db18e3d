"""Attach mode from a plain Python process: import the handler, call it, no ComfyUI spawned."""

from __future__ import annotations

import json
import os
import sys

from comfyui_standin import StandinComfyUI
from tests.conftest import attach_env
from tests.helpers import run_in_repo

SCRIPT = """
import asyncio, json, sys
from handler.handler import handler
job = json.loads(sys.argv[1])
print("RESULT " + json.dumps(asyncio.run(handler(job))))
"""
SECRET = "rpa_SUPERSECRETKEYVALUE"


def run_script(standin: StandinComfyUI, job: dict[str, object]) -> tuple[dict[str, object], str]:
    env = {**os.environ, **attach_env(standin), "RUNPOD_AI_API_KEY": SECRET}
    done = run_in_repo([sys.executable, "-c", SCRIPT, json.dumps(job)], env, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :]), done.stdout + done.stderr


def test_handler_works_from_any_python_process(standin: StandinComfyUI) -> None:
    workflow = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "p"}},
    }
    result, _ = run_script(standin, {"id": "attach-1", "input": {"workflow": workflow}})
    assert [o["filename"] for o in result["outputs"]] == ["p_00001_.png"]  # type: ignore[union-attr]


def test_secrets_are_redacted_from_errors_and_logs(standin: StandinComfyUI) -> None:
    workflow = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": SECRET}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }
    result, log = run_script(standin, {"id": "attach-2", "input": {"workflow": workflow}})
    assert "VALIDATION_FAILED" in str(result["error"])
    assert SECRET not in json.dumps(result)
    assert SECRET not in log
    assert "***" in log
