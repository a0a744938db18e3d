"""ComfyUI (and so every custom node pack) never sees the worker's secrets in its environment.

The worker is started as the image starts it (``python -u handler/handler.py``, spawn mode
with the stand-in as ComfyUI) and ComfyUI's environment is read from ``/proc/<pid>/environ``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.handler.test_supervisor import spawn_env
from tests.helpers import COMFYUI_STARTING, worker_process

SECRETS = {
    "RUNPOD_API_KEY": "rpa_WORKER_KEY_0123456789",
    "RUNPOD_AI_API_KEY": "rpa_AI_KEY_0123456789",
    "BUCKET_ACCESS_KEY_ID": "bucket-key-id-0123456789",
    "BUCKET_SECRET_ACCESS_KEY": "bucket-secret-0123456789",
    "MY_TEMPLATE_SECRET": "template-secret-0123456789",
    "HF_TOKEN": "hf_token_0123456789",
}


def comfyui_environment(tmp_path: Path, extra: dict[str, str]) -> dict[str, str]:
    with worker_process({**os.environ, **spawn_env(tmp_path), **extra}) as worker:
        assert worker.stdout is not None
        for line in worker.stdout:
            match = COMFYUI_STARTING.search(line)
            if match:
                # Read at once: Popen has exec'd it by now, and a loaded machine may see it restarted later.
                try:
                    raw = Path(f"/proc/{match.group(1)}/environ").read_bytes()
                except FileNotFoundError:
                    continue  # it died already: the worker restarts it, with the same environment
                return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)
        raise AssertionError("the worker did not start ComfyUI")


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc/<pid>/environ")
def test_comfyui_gets_an_allow_listed_environment(tmp_path: Path) -> None:
    extra = {
        **SECRETS,
        "BUCKET_ENDPOINT_URL": "https://s3.example.com",
        "BUCKET_NAME": "outputs",
        "HF_HOME": "/cache/hf",
        "CUDA_VISIBLE_DEVICES": "0",
        "MYPACK_MODE": "fast",
        "COMFYUI_ENV_PASSTHROUGH": "STANDIN_*, HF_TOKEN, MYPACK_*",
    }
    child = comfyui_environment(tmp_path, extra)
    for name, value in SECRETS.items():
        if name != "HF_TOKEN":
            assert name not in child and value not in child.values(), name
    assert not [name for name in child if name.startswith(("RUNPOD_", "BUCKET_"))]
    # What ComfyUI and the packs need, and what the operator passed on purpose, gets through.
    assert child["PATH"] == os.environ["PATH"]
    assert child["HF_HOME"] == "/cache/hf" and child["CUDA_VISIBLE_DEVICES"] == "0"
    assert child["HF_TOKEN"] == SECRETS["HF_TOKEN"] and child["MYPACK_MODE"] == "fast"
    assert child["PYTHONUNBUFFERED"] == "1"
