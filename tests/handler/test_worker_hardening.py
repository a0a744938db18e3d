"""What an attacker, a careless caller or a bad day can no longer do to the worker (issue 14).

Every test goes through ``Worker.run`` (what ``handler(job)`` calls) against the ComfyUI
stand-in, as a caller would.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from comfyui_standin import StandinComfyUI
from handler.input_files import MAX_PARALLEL_DOWNLOADS
from handler.job_input import MAX_INPUT_FILES, MAX_NESTING_DEPTH
from handler.settings import Settings
from handler.supervisor import AttachedComfyUI
from handler.worker import Worker
from tests.conftest import make_worker
from tests.helpers import decode_error, empty_invert_save, load_invert_save, pixel, png_b64, png_bytes

MiB = 1024 * 1024


def job(workflow: dict[str, Any], job_id: str = "job-1", **extra: Any) -> dict[str, Any]:
    return {"id": job_id, "input": {"workflow": workflow, **extra}}


def unknown_node(class_type: str = "NoSuchNode") -> dict[str, Any]:
    return {"1": {"class_type": class_type, "inputs": {}}}


# -- 3. URL inputs: one byte budget per job --------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A plain HTTP file server in its own process (its memory is not the worker's).

    Yields its URL and its request log (one line per request it answered).
    """
    root = tmp_path / "served"
    root.mkdir()
    (root / "big.bin").write_bytes(b"\x5a" * (8 * MiB))
    (root / "small.png").write_bytes(png_bytes())
    log = tmp_path / "server.log"
    port = free_port()
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(root)],
            stdout=sink,
            stderr=sink,
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the file server did not start"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", log
    finally:
        server.terminate()
        server.wait(10)


async def test_many_url_inputs_stop_at_the_byte_cap_without_holding_them_all(
    standin: StandinComfyUI, file_server: tuple[str, Path]
) -> None:
    """40 URLs x 8 MiB against a 10 MiB cap: refused after about 10 MiB, not 320 MiB later."""
    url, log = file_server
    cap = 10 * MiB
    worker = make_worker(standin, MAX_INPUT_BYTES=cap, ALLOW_PRIVATE_INPUT_URLS="true")
    files = [{"name": f"f{i}.bin", "url": f"{url}/big.bin?copy={i}"} for i in range(40)]
    await worker.run(job(empty_invert_save(), job_id="warm"))  # ComfyUI's node list, cached

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = await worker.run(job(load_invert_save("f0.bin"), images=files))
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()

    error = decode_error(result)
    assert error["code"] == "INPUT_FILE_ERROR"
    assert f"MAX_INPUT_BYTES={cap}" in error["message"]
    assert peak < 3 * cap, f"the worker held {peak / MiB:.0f} MiB for a {cap / MiB:.0f} MiB cap"
    served = [line for line in log.read_text().splitlines() if '"GET /big.bin' in line]
    print(f"peak {peak / MiB:.1f} MiB for a {cap / MiB:.0f} MiB cap; {len(served)} of 40 URLs requested")
    # A few downloads at a time, and the first failure cancelled the others.
    assert len(served) <= 2 * MAX_PARALLEL_DOWNLOADS, served
    assert not (standin.input_dir / "runpod-jobs" / "job-1").exists()


async def test_url_inputs_under_the_cap_all_arrive(
    standin: StandinComfyUI, file_server: tuple[str, Path]
) -> None:
    url, _ = file_server
    worker = make_worker(standin, ALLOW_PRIVATE_INPUT_URLS="true")
    files = [
        {"name": f"in/{i}.png", "url": f"{url}/small.png?copy={i}"} for i in range(3 * MAX_PARALLEL_DOWNLOADS)
    ]
    workflow = load_invert_save(f"in/{3 * MAX_PARALLEL_DOWNLOADS - 1}.png")
    result = await worker.run(job(workflow, images=files))
    assert pixel(result["outputs"][0]["data"]) == (255, 0, 255)


async def test_the_number_of_input_files_is_capped(worker: Worker) -> None:
    files = [{"name": f"{i}.png", "url": f"https://example.com/{i}.png"} for i in range(MAX_INPUT_FILES + 1)]
    error = decode_error(await worker.run(job(empty_invert_save(), images=files)))
    assert error["code"] == "INVALID_INPUT"
    assert f"MAX_INPUT_FILES={MAX_INPUT_FILES}" in error["message"]


# -- 4. base64 results are capped too --------------------------------------------------------------


async def test_base64_mode_refuses_results_over_the_threshold(standin: StandinComfyUI) -> None:
    worker = make_worker(standin, OUTPUT_AUTO_THRESHOLD=10)
    error = decode_error(await worker.run(job(empty_invert_save(), output={"mode": "base64"})))
    assert error["code"] == "OUTPUT_TOO_LARGE"
    assert "OUTPUT_AUTO_THRESHOLD=10" in error["message"]
    fits = make_worker(standin, OUTPUT_AUTO_THRESHOLD=1 * MiB)
    result = await fits.run(job(empty_invert_save(), job_id="2", output={"mode": "base64"}))
    assert result["delivery"] == "base64" and result["outputs"][0]["data"]


# -- 6. a job's own secrets are redacted for that job only -----------------------------------------


async def test_a_jobs_secrets_do_not_garble_later_jobs(standin: StandinComfyUI) -> None:
    worker = make_worker(standin, ALLOW_PRIVATE_INPUT_URLS="true")
    s3 = {
        "endpoint_url": "http://127.0.0.1:9",
        "access_key_id": "NoSuchNode",  # long enough to be redacted, within this job
        "secret_access_key": "node",  # too short to be worth redacting anywhere
        "bucket": "b",
    }
    first = decode_error(await worker.run(job(unknown_node(), job_id="a", output={"mode": "s3", "s3": s3})))
    assert first["code"] == "VALIDATION_FAILED"
    assert first["message"].startswith("the workflow has 1 problem(s): node 1 (***)"), first["message"]
    assert "NoSuchNode" not in json.dumps(first)

    later = decode_error(await worker.run(job(unknown_node(), job_id="b")))
    fresh = decode_error(await make_worker(standin).run(job(unknown_node(), job_id="b")))
    assert later["message"] == fresh["message"]
    assert "NoSuchNode" in later["message"] and "***" not in later["message"]


async def test_runpod_s3_config_secrets_are_redacted_within_their_job(
    standin: StandinComfyUI, caplog: pytest.LogCaptureFixture
) -> None:
    worker = make_worker(standin, ALLOW_PRIVATE_INPUT_URLS="true")
    config = {
        "accessId": "AKIA-JOB-OWN-KEY",
        "accessSecret": "job-own-secret-value",
        "bucketName": "b",
        "endpointUrl": "http://127.0.0.1:9",
    }
    result = await worker.run(
        {"id": "c", "input": {"workflow": unknown_node("job-own-secret-value")}, "s3Config": config}
    )
    assert decode_error(result)["code"] == "VALIDATION_FAILED"
    assert "job-own-secret-value" not in result["error"]
    assert "job-own-secret-value" not in caplog.text


# -- 7. only public addresses, for input URLs and a request's S3 endpoint ----------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://100.64.0.1/a.png",  # carrier-grade NAT (metadata services on some clouds)
        "http://[64:ff9b::7f00:1]/a.png",  # NAT64 of 127.0.0.1
        "http://198.18.0.1/a.png",
        "http://localhost:9/a.png",  # a name that resolves to loopback
    ],
)
async def test_input_urls_to_non_global_addresses_are_refused(worker: Worker, url: str) -> None:
    error = decode_error(
        await worker.run(job(load_invert_save("a.png"), images=[{"name": "a.png", "url": url}]))
    )
    assert error["code"] == "INPUT_FILE_ERROR"
    assert "not a public address" in error["message"]


async def test_a_requests_s3_endpoint_cannot_point_inside(worker: Worker, standin: StandinComfyUI) -> None:
    s3 = {
        "endpoint_url": standin.url,
        "access_key_id": "AKIDTEST",
        "secret_access_key": "SECRETTEST",
        "bucket": "b",
    }
    error = decode_error(await worker.run(job(empty_invert_save(), output={"mode": "s3", "s3": s3})))
    assert error["code"] == "INVALID_INPUT"
    assert "output.s3.endpoint_url" in error["details"][0]["field"]
    assert "not a public address" in error["message"]
    assert not [r for r in standin.requests if r.method in ("PUT", "POST") and r.path.startswith("/b")]
    assert not [r for r in standin.requests if r.path == "/prompt"], "the GPU work must not start"

    config = {
        "accessId": "AKIDTEST",
        "accessSecret": "SECRETTEST",
        "bucketName": "b",
        "endpointUrl": "http://100.64.0.9",
    }
    refused = decode_error(
        await worker.run({"id": "2", "input": {"workflow": empty_invert_save()}, "s3Config": config})
    )
    assert refused["code"] == "INVALID_INPUT" and "100.64.0.9" in refused["message"]


# -- 9. deep nesting is bad input --------------------------------------------------------------------


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


async def test_a_deeply_nested_workflow_is_invalid_input_naming_the_limit(worker: Worker) -> None:
    workflow = {"1": {"class_type": "PreviewAny", "inputs": {"source": nested(5000)}}}
    result = await worker.run(job(workflow))
    error = decode_error(result)
    assert error["code"] == "INVALID_INPUT"
    assert f"MAX_NESTING_DEPTH={MAX_NESTING_DEPTH}" in error["message"]
    assert error["details"][0]["field"] == "workflow"
    assert len(result["error"]) < 20_000

    as_text = '{"1": {"class_type": "PreviewAny", "inputs": {"source": ' + "[" * 5000 + "]" * 5000 + "}}}"
    error = decode_error(await worker.run(job(as_text)))  # type: ignore[arg-type]
    assert error["code"] == "INVALID_INPUT" and "MAX_NESTING_DEPTH" in error["message"]


async def test_ordinary_nesting_is_still_accepted(worker: Worker) -> None:
    workflow = empty_invert_save()
    workflow["9"] = {"class_type": "PreviewAny", "inputs": {"source": json.dumps(nested(30))}}
    result = await worker.run(job(workflow))
    assert "error" not in result, decode_error(result)


# -- 10. attach mode without the input directory: ComfyUI's upload API -------------------------------


def remote_worker(standin: StandinComfyUI) -> Worker:
    """A worker attached to a ComfyUI whose folders it does not know (e.g. on another machine)."""
    settings = Settings.from_env(
        {"COMFYUI_URL": standin.url, "HEALTH_CHECK_INTERVAL": "0.2", "COMFYUI_STARTUP_TIMEOUT": "10"}
    )
    assert settings.input_dir is None
    return Worker(settings, AttachedComfyUI(settings))


async def test_input_files_are_uploaded_when_the_input_dir_is_unknown(standin: StandinComfyUI) -> None:
    worker = remote_worker(standin)
    images = [
        {"name": "masks/green.png", "image": png_b64((0, 255, 0))},
        {"name": "top.png", "image": png_b64((0, 0, 255))},
    ]
    result = await worker.run(job(load_invert_save("masks/green.png"), images=images))
    assert "error" not in result, decode_error(result)
    assert pixel(result["outputs"][0]["data"]) == (255, 0, 255)
    uploads = [r for r in standin.requests if r.method == "POST" and r.path == "/upload/image"]
    assert len(uploads) == 2
    folder = standin.input_dir / "runpod-jobs" / "job-1"
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png")) == [
        "masks/green.png",
        "top.png",
    ]

    # A retry of the same job with other bytes replaces the files (overwrite), never "name (1).png".
    again = await worker.run(
        job(
            load_invert_save("masks/green.png"),
            images=[{"name": "masks/green.png", "image": png_b64((255, 0, 0))}],
        )
    )
    assert pixel(again["outputs"][0]["data"]) == (0, 255, 255)
    assert not list(folder.rglob("* (1).png"))


async def test_an_upload_comfyui_refuses_is_an_input_file_error(tmp_path: Path) -> None:
    with StandinComfyUI(tmp_path / "comfyui", extra_args=["--max-upload-size", "0.001"]) as small:
        worker = remote_worker(small)
        big = png_b64()  # a few hundred bytes of PNG...
        images = [{"name": "a.png", "image": big}, {"name": "b.bin", "image": "QUJD" * 1000}]
        error = decode_error(await worker.run(job(load_invert_save("a.png"), images=images)))
    assert error["code"] == "INPUT_FILE_ERROR"
    assert re.search(r"b\.bin.*max-upload-size", error["message"]), error["message"]
