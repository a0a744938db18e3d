"""The project's endpoint client and `invoke run` against the local endpoint, real workers behind it.

This is the user's loop: a workflow file and input files in, outputs saved on disk or a
structured error printed.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

from custom_node.endpoint_client import EndpointClient
from custom_node.errors import JobFailed
from custom_node.run import run_workflow
from custom_node.workflow_file import load_workflow
from local_endpoint.endpoint import LocalEndpoint
from tests.helpers import REPO, load_invert_save, pixel, png_bytes, run_in_repo


async def test_a_workflow_with_inputs_runs_and_its_outputs_are_saved(
    endpoint: LocalEndpoint, tmp_path: Path
) -> None:
    image = tmp_path / "masks" / "green.png"
    image.parent.mkdir()
    image.write_bytes(png_bytes((0, 255, 0)))
    seen: list[str] = []
    async with EndpointClient(endpoint.url, endpoint.api_key) as client:
        done = await run_workflow(
            client,
            load_invert_save("masks/green.png"),
            images=[{"name": "masks/green.png", "image": base64.b64encode(image.read_bytes()).decode()}],
            out_dir=tmp_path / "out",
            on_status=lambda body: seen.append(body["status"]),
        )
    assert done.job["status"] == "COMPLETED" and seen[-1] == "COMPLETED"
    [saved] = done.files
    assert saved == tmp_path / "out" / done.job["id"] / "inv_00001_.png"
    assert pixel(base64.b64encode(saved.read_bytes()).decode()) == (255, 0, 255)


async def test_a_failing_workflow_raises_with_the_decoded_error(
    endpoint: LocalEndpoint, tmp_path: Path
) -> None:
    async with EndpointClient(endpoint.url, endpoint.api_key) as client:
        with pytest.raises(JobFailed) as failed:
            await run_workflow(client, load_invert_save("not-sent.png"), out_dir=tmp_path)
    assert failed.value.job["status"] == "FAILED"
    assert failed.value.error.code == "VALIDATION_FAILED"
    assert failed.value.error.details[0]["type"] == "input_file_missing"


async def test_runsync_returns_the_output(endpoint: LocalEndpoint) -> None:
    async with EndpointClient(endpoint.url, endpoint.api_key) as client:
        body = await client.runsync(
            {"workflow": load_workflow(REPO / "workflows" / "sample_invert.json")}, wait_ms=30_000
        )
    assert body["status"] == "COMPLETED"
    assert body["output"]["outputs"][0]["filename"] == "inverted_00001_.png"


def invoke(endpoint: LocalEndpoint, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RUNPOD_ENDPOINT_URL": endpoint.url, "RUNPOD_API_KEY": endpoint.api_key}
    return run_in_repo([sys.executable, "-m", "invoke", *args], env)


def test_invoke_run_saves_outputs(endpoint: LocalEndpoint, tmp_path: Path) -> None:
    done = invoke(endpoint, "run", "--workflow", "workflows/sample_invert.json", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    [saved] = list(tmp_path.rglob("*.png"))
    assert saved.relative_to(tmp_path).parts[1:] == ("sample", "inverted_00001_.png")
    assert str(saved) in done.stdout


def test_invoke_run_prints_the_structured_error(endpoint: LocalEndpoint, tmp_path: Path) -> None:
    workflow = tmp_path / "broken.json"
    workflow.write_text('{"1": {"class_type": "NoSuchNode", "inputs": {}}}')
    done = invoke(endpoint, "run", "--workflow", str(workflow), "--out", str(tmp_path))
    assert done.returncode == 1
    assert "VALIDATION_FAILED" in done.stderr and "node 1 (NoSuchNode)" in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_arguments_are_one_line_errors(endpoint: LocalEndpoint, tmp_path: Path) -> None:
    done = invoke(endpoint, "run", "--workflow", str(tmp_path / "missing.json"))
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "cannot read workflow" in done.stderr
