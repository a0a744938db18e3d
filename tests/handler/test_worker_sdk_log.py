"""A job's output never reaches the worker log, under the unmodified runpod SDK loop.

The runpod SDK logs every job's whole result (all base64 images, presigned URLs) at its
default level, DEBUG. The worker defaults ``RUNPOD_LOG_LEVEL`` to INFO before it imports the
SDK, and the image sets it too. Here a real ``python -u handler/handler.py`` takes a job from
the local endpoint (RunPod's worker protocol) with ``RUNPOD_LOG_LEVEL`` unset, and its whole
log is searched for the output.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from comfyui_standin import StandinComfyUI
from tests.comfy_install.test_image import instructions
from tests.conftest import attach_env
from tests.helpers import empty_invert_save
from tests.local_endpoint_fixtures import Api, running_endpoint, wait_until

REPO = Path(__file__).resolve().parents[2]
KEY = "sdk-log-test-key"


def test_a_jobs_output_does_not_reach_the_worker_log(standin: StandinComfyUI, tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    with running_endpoint(workers=0, api_key=KEY) as endpoint:
        env = {**endpoint.env_for_worker("log-check"), **attach_env(standin)}
        env.pop("RUNPOD_LOG_LEVEL", None)
        env.pop("RUNPOD_DEBUG_LEVEL", None)
        with log.open("wb") as sink:
            worker = subprocess.Popen(
                [sys.executable, "-u", "handler/handler.py"],
                cwd=REPO,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            api = Api(endpoint, key=KEY)
            status = api.wait(api.run({"workflow": empty_invert_save()}), timeout=90)
            assert status["status"] == "COMPLETED", status
            wait_until(lambda: "Finished" in log.read_text(), timeout=10, what="the SDK's 'Finished' line")
        finally:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)
    text = log.read_text()
    [image] = status["output"]["outputs"]
    assert "Started" in text, "the SDK's own log lines are in the log"
    assert image["data"][:64] not in text
    assert "Handler output" not in text


def test_the_image_sets_the_sdk_log_level() -> None:
    env: dict[str, str] = {}
    for op, args in instructions("worker"):
        if op == "ENV":
            env.update(part.partition("=")[::2] for part in args.split())
    assert env["RUNPOD_LOG_LEVEL"] == "INFO"  # as handler/handler.py's default
