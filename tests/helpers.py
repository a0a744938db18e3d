"""Workflows and small helpers shared by the tests: images, job errors, processes run from the repository."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from jsonschema import Draft202012Validator
from PIL import Image

from custom_node.config import RunPodConfig
from custom_node.job_error import SCHEMA_FILE
from custom_node.jobs import JobTracker
from custom_node.routes import Deps, add_routes

#: The job error's one schema (shipped in custom_node/), checked against every payload below.
JOB_ERROR_SCHEMA: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
_JOB_ERROR_VALIDATOR = Draft202012Validator(JOB_ERROR_SCHEMA)

REPO = Path(__file__).resolve().parents[1]
#: The worker's log line when it has started ComfyUI (group 1: ComfyUI's pid).
COMFYUI_STARTING = re.compile(r"ComfyUI starting \(pid (\d+)\)")


def write_file(path: Path, data: bytes) -> Path:
    """``data`` at ``path``, its folders made: a file of a test's local tree (models, inputs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def png_bytes(color: tuple[int, int, int] = (0, 255, 0), size: tuple[int, int] = (8, 6)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def png_b64(color: tuple[int, int, int] = (0, 255, 0)) -> str:
    return base64.b64encode(png_bytes(color)).decode()


def pixel(data_b64: str) -> tuple[int, ...]:
    image = Image.open(io.BytesIO(base64.b64decode(data_b64))).convert("RGB")
    return tuple(image.getpixel((0, 0)))  # type: ignore[arg-type]


def empty_invert_save(color: int = 0x00FF00, prefix: str = "sample/inverted") -> dict[str, Any]:
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 16, "height": 12, "batch_size": 1, "color": color},
        },
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}},
    }


def load_invert_save(image: str) -> dict[str, Any]:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "inv"}},
    }


def raise_save(message: str = "kaput", exception_type: str = "ValueError") -> dict[str, Any]:
    """A workflow whose first node raises (the stand-in's ``StandinRaise``): the job fails in ComfyUI."""
    return {
        "1": {"class_type": "StandinRaise", "inputs": {"message": message, "exception_type": exception_type}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "never"}},
    }


def endpoint_fields(**extra: Any) -> dict[str, Any]:
    """A queue endpoint in the providers' field names, as ``RunPodREST.save_endpoint`` takes it."""
    return {
        "name": "comfy",
        "gpuIds": "ADA_24,AMPERE_48",
        "gpuCount": 1,
        "workersMin": 0,
        "workersMax": 3,
        "idleTimeout": 5,
        "scalerType": "QUEUE_DELAY",
        "scalerValue": 4,
        "locations": "EU-RO-1",
        "allowedCudaVersions": "13.0",
        "flashBootType": "FLASHBOOT",
        "executionTimeoutMs": 600000,
        **extra,
    }


def with_node(workflow: dict[str, Any], node_id: str, class_type: str, **inputs: Any) -> dict[str, Any]:
    wf = json.loads(json.dumps(workflow))
    wf[node_id] = {"class_type": class_type, "inputs": inputs}
    return wf


def assert_job_error(payload: Any) -> None:
    """Fail with every schema violation of a job error payload, each with its path."""
    problems = [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in _JOB_ERROR_VALIDATOR.iter_errors(payload)
    ]
    assert not problems, f"not a job error per {SCHEMA_FILE.name}: {problems}\n{str(payload)[:1000]}"


def decode_error(result: dict[str, Any]) -> dict[str, Any]:
    """The worker's error payload of a failed job, checked against the job error schema."""
    assert "error" in result, f"expected a failed job, got {str(result)[:500]}"
    error: dict[str, Any] = json.loads(result["error"])
    assert_job_error(error)
    return error


def run_in_repo(
    args: Sequence[str], env: Mapping[str, str], *, timeout: float = 120, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    """Run a command as a user does from the repository root; output captured as text, any exit status."""
    return subprocess.run(
        list(args), cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=timeout, check=False
    )


@contextlib.contextmanager
def worker_process(env: Mapping[str, str]) -> Iterator[subprocess.Popen[str]]:
    """``python -u handler/handler.py`` (the image's command) in its own process group, stdout and stderr
    merged into one text pipe; the whole group is killed afterwards (ComfyUI with it)."""
    worker = subprocess.Popen(
        [sys.executable, "-u", "handler/handler.py"],
        cwd=REPO,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        yield worker
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
        if worker.stdout is not None:
            worker.stdout.close()


def custom_node_app(
    config: Callable[[], RunPodConfig], input_dir: Path, tracker: JobTracker
) -> web.Application:
    """The custom node's ``/runpod/*`` routes on an aiohttp app, as ComfyUI's PromptServer serves them."""
    routes = web.RouteTableDef()
    add_routes(routes, Deps(config, lambda: input_dir, tracker))
    app = web.Application()
    app.add_routes(routes)
    return app
