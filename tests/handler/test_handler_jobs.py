"""Jobs through the real worker against the in-process ComfyUI stand-in (attach mode).

Each test states one behaviour a caller sees: what comes back, how fast, and what is left on
disk afterwards.
"""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path
from typing import Any

import pytest

from comfyui_standin import StandinComfyUI
from handler.worker import Worker
from tests.conftest import make_worker
from tests.helpers import decode_error, empty_invert_save, load_invert_save, pixel, png_b64


def job(workflow: dict[str, Any], job_id: str = "job-1", **extra: Any) -> dict[str, Any]:
    return {"id": job_id, "input": {"workflow": workflow, **extra}}


def posted(server: StandinComfyUI, path: str) -> list[Any]:
    return [body for method, p, body in list(server.requests) if method == "POST" and p == path]


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


# -- success -----------------------------------------------------------------------------------


async def test_outputs_come_back_as_base64_with_their_metadata(
    worker: Worker, standin: StandinComfyUI
) -> None:
    result = await worker.run(job(empty_invert_save(color=0x00FF00)))
    [image] = result["outputs"]
    assert image["node_id"] == "3"
    assert (image["kind"], image["mime"], image["type"]) == ("image", "image/png", "output")
    assert (image["subfolder"], image["filename"]) == ("sample", "inverted_00001_.png")
    assert image["bytes"] == len(base64.b64decode(image["data"]))
    assert pixel(image["data"]) == (255, 0, 255)  # green, inverted
    assert set(result["timings"]) == {"queue_wait_s", "execution_s", "encode_upload_s", "total_s"}
    assert result["delivery"] == "base64"


async def test_job_files_are_removed_afterwards(worker: Worker, standin: StandinComfyUI) -> None:
    result = await worker.run(
        job(load_invert_save("in/green.png"), images=[{"name": "in/green.png", "image": png_b64()}])
    )
    assert pixel(result["outputs"][0]["data"]) == (255, 0, 255)
    assert tree(standin.input_dir / "runpod-jobs") == []
    assert tree(standin.output_dir / "runpod-jobs") == []


async def test_identical_prompts_both_return_files(worker: Worker, standin: StandinComfyUI) -> None:
    first = await worker.run(job(empty_invert_save(), job_id="a"))
    second = await worker.run(job(empty_invert_save(), job_id="b"))
    assert len(first["outputs"]) == len(second["outputs"]) == 1
    assert pixel(first["outputs"][0]["data"]) == pixel(second["outputs"][0]["data"]) == (255, 0, 255)
    # ComfyUI's cache served the upstream nodes; only the save ran again.
    assert set(second["cached_nodes"]) == {"1", "2"}


async def test_subfolder_inputs_reach_loadimage_and_loadimagewithsubfolder_style_nodes(
    worker: Worker, standin: StandinComfyUI
) -> None:
    workflow = load_invert_save("masks/red.png")
    result = await worker.run(
        job(
            workflow,
            images=[{"name": "masks/red.png", "image": "data:image/png;base64," + png_b64((255, 0, 0))}],
        )
    )
    assert pixel(result["outputs"][0]["data"]) == (0, 255, 255)


async def test_every_output_kind_is_returned(worker: Worker, standin: StandinComfyUI) -> None:
    workflow = empty_invert_save()
    workflow["4"] = {
        "class_type": "StandinVideoCombine",
        "inputs": {
            "images": ["1", 0],
            "frame_rate": 8,
            "filename_prefix": "vid/clip",
            "format": "video/h264-mp4",
            "save_output": True,
        },
    }
    workflow["5"] = {
        "class_type": "StandinSaveAudio",
        "inputs": {"filename_prefix": "audio/tone", "seconds": 0.05},
    }
    workflow["6"] = {
        "class_type": "StandinSaveText",
        "inputs": {"text": "hello", "filename_prefix": "notes/t"},
    }
    workflow["7"] = {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}
    workflow["8"] = {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}}
    workflow["9"] = {
        "class_type": "SaveAnimatedWEBP",
        "inputs": {
            "images": ["1", 0],
            "filename_prefix": "anim",
            "fps": 6.0,
            "lossless": False,
            "quality": 80,
            "method": "default",
        },
    }
    result = await worker.run(job(workflow))
    kinds = {(o["node_id"], o["kind"], o.get("mime")) for o in result["outputs"]}
    assert ("3", "image", "image/png") in kinds
    assert ("4", "video", "video/mp4") in kinds
    assert ("5", "audio", "audio/x-wav") in kinds or ("5", "audio", "audio/wav") in kinds
    assert ("6", "text", "text/plain") in kinds
    assert ("7", "text", None) in kinds
    assert ("9", "image", "image/webp") in kinds
    assert not any(o.get("type") == "temp" for o in result["outputs"]), "temp outputs only on request"
    text_file = next(o for o in result["outputs"] if o["node_id"] == "6")
    assert base64.b64decode(text_file["data"]) == b"hello" and text_file["subfolder"] == "notes"

    with_temp = await worker.run(job(workflow, job_id="t", include_temp=True))
    assert any(o["node_id"] == "8" and o["type"] == "temp" for o in with_temp["outputs"])


async def test_progress_is_forwarded(standin: StandinComfyUI) -> None:
    updates: list[dict[str, Any]] = []
    workflow = {"1": {"class_type": "StandinSleep", "inputs": {"seconds": 0.4}}}
    worker = make_worker(standin, PROGRESS_INTERVAL=0.05)
    result = await worker.run(job(workflow), progress=updates.append)
    assert "error" not in result
    assert len(updates) >= 3
    assert updates[-1]["node"] == "1" and updates[-1]["class_type"] == "StandinSleep"
    assert all(u["max"] and 0 <= u["step"] <= u["max"] for u in updates if u["step"] is not None)


# -- validation ---------------------------------------------------------------------------------


async def test_all_validation_problems_in_one_response_and_nothing_queued(
    worker: Worker, standin: StandinComfyUI
) -> None:
    workflow = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd1.5.safetensors"}},
        "2": {"class_type": "EmptyImage", "inputs": {"width": 0, "height": 8, "batch_size": 1, "color": 0}},
        "3": {"class_type": "IPAdapterAdvanced", "inputs": {}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["42", 0], "filename_prefix": "x"}},
    }
    error = decode_error(await worker.run(job(workflow)))
    assert error["code"] == "VALIDATION_FAILED"
    by_node = {d["node_id"]: d for d in error["details"]}
    assert by_node["1"]["folder"] == "checkpoints" and by_node["1"]["closest"][0] == "sd15.safetensors"
    assert str(standin.models_dir / "checkpoints") in by_node["1"]["searched"]
    assert by_node["2"]["type"] == "value_smaller_than_min"
    assert by_node["3"]["type"] == "unknown_class"
    assert by_node["4"]["type"] == "link_to_missing_node"
    assert posted(standin, "/prompt") == []
    assert error["diagnostics"]["models"]["checkpoints"]["files"] == 2


async def test_models_synced_after_start_are_found(worker: Worker, standin: StandinComfyUI) -> None:
    await worker.run(job(empty_invert_save()))  # fills the cache
    (standin.models_dir / "checkpoints" / "new.safetensors").write_bytes(b"weights")
    workflow = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "new.safetensors"}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }
    result = await worker.run(job(workflow, job_id="2"))
    assert "error" not in result, decode_error(result)


async def test_missing_input_file_is_named(worker: Worker) -> None:
    error = decode_error(await worker.run(job(load_invert_save("forgot.png"))))
    assert error["code"] == "VALIDATION_FAILED"
    [detail] = error["details"]
    assert (detail["node_id"], detail["input"], detail["type"]) == ("1", "image", "input_file_missing")


async def test_ui_format_gets_the_export_hint(worker: Worker) -> None:
    error = decode_error(await worker.run({"id": "x", "input": {"workflow": {"nodes": [], "links": []}}}))
    assert error["code"] == "INVALID_INPUT" and "Export (API)" in error["details"][0]["message"]


# -- execution failures ------------------------------------------------------------------------------


async def test_execution_error_names_node_exception_and_traceback(worker: Worker) -> None:
    workflow = {
        "1": {
            "class_type": "StandinRaise",
            "inputs": {"message": "CUDA says no", "exception_type": "ValueError"},
        }
    }
    error = decode_error(await worker.run(job(workflow)))
    assert error["code"] == "EXECUTION_ERROR"
    [detail] = error["details"]
    assert (detail["node_id"], detail["class_type"], detail["exception_type"]) == (
        "1",
        "StandinRaise",
        "ValueError",
    )
    assert detail["message"] == "CUDA says no"
    assert detail["traceback"]


async def test_timeout_interrupts_within_a_second_of_the_limit(
    worker: Worker, standin: StandinComfyUI
) -> None:
    workflow = {"1": {"class_type": "StandinSleep", "inputs": {"seconds": 30}}}
    started = time.monotonic()
    error = decode_error(await worker.run(job(workflow, timeout_s=0.5)))
    elapsed = time.monotonic() - started
    assert error["code"] == "TIMEOUT"
    assert 0.5 <= elapsed < 1.5
    prompt_id = error["details"][0]["prompt_id"]
    assert {"prompt_id": prompt_id} in posted(standin, "/interrupt")
    assert {"delete": [prompt_id]} in posted(standin, "/queue")


async def test_hang_times_out_too(worker: Worker) -> None:
    started = time.monotonic()
    error = decode_error(
        await worker.run(job({"1": {"class_type": "StandinHang", "inputs": {}}}, timeout_s=0.5))
    )
    assert error["code"] == "TIMEOUT"
    assert time.monotonic() - started < 1.5


async def test_cancel_interrupts_comfyui(worker: Worker, standin: StandinComfyUI) -> None:
    task = asyncio.create_task(
        worker.run(job({"1": {"class_type": "StandinSleep", "inputs": {"seconds": 30}}}))
    )
    for _ in range(200):
        if posted(standin, "/prompt"):
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [queued] = posted(standin, "/prompt")
    assert {"prompt_id": queued["prompt_id"]} in posted(standin, "/interrupt")
    # ComfyUI is free again: the next job runs.
    assert "error" not in await worker.run(job(empty_invert_save(), job_id="next"))


@pytest.mark.parametrize("mode", ["abort", "close"])
async def test_a_dropped_websocket_is_survived(worker: Worker, mode: str) -> None:
    workflow = empty_invert_save()
    workflow["4"] = {
        "class_type": "StandinDropWebsockets",
        "inputs": {"mode": mode, "then_sleep": 0.3, "images": ["2", 0]},
    }
    workflow["3"]["inputs"]["images"] = ["4", 0]
    result = await worker.run(job(workflow))
    assert "error" not in result, decode_error(result)
    assert [o["node_id"] for o in result["outputs"]] == ["3"]


# -- delivery ------------------------------------------------------------------------------------------


def bucket(s3_server: str, name: str) -> dict[str, str]:
    import boto3

    boto3.client(
        "s3",
        endpoint_url=s3_server,
        aws_access_key_id="AKIDTEST",
        aws_secret_access_key="SECRETTEST",
        region_name="us-east-1",
    ).create_bucket(Bucket=name)
    return {
        "endpoint_url": s3_server,
        "access_key_id": "AKIDTEST",
        "secret_access_key": "SECRETTEST",
        "bucket": name,
    }


async def test_s3_mode_returns_urls_to_the_uploaded_files(standin: StandinComfyUI, s3_server: str) -> None:
    import urllib.request

    target = bucket(s3_server, "outputs-env")
    worker = make_worker(
        standin,
        BUCKET_ENDPOINT_URL=s3_server,
        BUCKET_ACCESS_KEY_ID="AKIDTEST",
        BUCKET_SECRET_ACCESS_KEY="SECRETTEST",
        BUCKET_NAME=target["bucket"],
        BUCKET_REGION="us-east-1",
    )
    result = await worker.run(job(empty_invert_save(), output={"mode": "s3"}))
    [image] = result["outputs"]
    assert "data" not in image and result["delivery"] == "s3"
    assert "/outputs-env/comfy-runpod/job-1/sample/inverted_00001_.png" in image["url"]
    with urllib.request.urlopen(image["url"]) as response:
        body = response.read()
    assert len(body) == image["bytes"]


async def test_auto_switches_to_s3_above_the_threshold(standin: StandinComfyUI, s3_server: str) -> None:
    target = bucket(s3_server, "outputs-auto")
    # The request's own S3 endpoint is on loopback here: allowed only with the setting.
    worker = make_worker(standin, OUTPUT_AUTO_THRESHOLD=10, ALLOW_PRIVATE_INPUT_URLS="true")
    result = await worker.run(job(empty_invert_save(), output={"mode": "auto", "s3": target}))
    assert result["delivery"] == "s3" and "url" in result["outputs"][0]
    small = make_worker(standin, ALLOW_PRIVATE_INPUT_URLS="true")
    result = await small.run(job(empty_invert_save(), job_id="2", output={"mode": "auto", "s3": target}))
    assert result["delivery"] == "base64"


async def test_auto_without_a_bucket_refuses_oversized_results(standin: StandinComfyUI) -> None:
    worker = make_worker(standin, OUTPUT_AUTO_THRESHOLD=10)
    error = decode_error(await worker.run(job(empty_invert_save())))
    assert error["code"] == "OUTPUT_TOO_LARGE" and "BUCKET_" in error["message"]


async def test_request_bucket_secret_never_appears_in_errors_or_logs(
    standin: StandinComfyUI, s3_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    worker = make_worker(standin, ALLOW_PRIVATE_INPUT_URLS="true")
    target = {
        **bucket(s3_server, "exists"),
        "bucket": "no-such-bucket",
        "secret_access_key": "TOPSECRETVALUE42",
    }
    result = await worker.run(job(empty_invert_save(), output={"mode": "s3", "s3": target}))
    error = decode_error(result)
    assert error["code"] == "OUTPUT_ERROR"
    assert "TOPSECRETVALUE42" not in result["error"]
    assert "TOPSECRETVALUE42" not in caplog.text


# -- URL inputs ------------------------------------------------------------------------------------------


async def test_url_inputs_to_private_addresses_are_refused(worker: Worker, standin: StandinComfyUI) -> None:
    (standin.input_dir / "served.png").write_bytes(base64.b64decode(png_b64()))
    url = f"{standin.url}/view?filename=served.png&type=input"
    error = decode_error(
        await worker.run(job(load_invert_save("u.png"), images=[{"name": "u.png", "url": url}]))
    )
    assert error["code"] == "INPUT_FILE_ERROR" and "private" in error["message"]
    assert tree(standin.input_dir / "runpod-jobs") == []


async def test_url_inputs_are_downloaded_when_allowed(standin: StandinComfyUI) -> None:
    worker = make_worker(standin, ALLOW_PRIVATE_INPUT_URLS="true")
    (standin.input_dir / "served.png").write_bytes(base64.b64decode(png_b64()))
    url = f"{standin.url}/view?filename=served.png&type=input"
    result = await worker.run(job(load_invert_save("u.png"), images=[{"name": "u.png", "url": url}]))
    assert pixel(result["outputs"][0]["data"]) == (255, 0, 255)


async def test_comfyui_refusals_come_back_in_the_same_shape(worker: Worker, standin: StandinComfyUI) -> None:
    """What only ComfyUI catches (here: our object_info cache lost EmptyImage's minimum)."""
    await worker.run(job(empty_invert_save(), job_id="warm"))
    del worker.object_info["EmptyImage"]["input"]["required"]["width"][1]["min"]
    workflow = empty_invert_save()
    workflow["1"]["inputs"]["width"] = 0
    error = decode_error(await worker.run(job(workflow)))
    assert error["code"] == "VALIDATION_FAILED"
    assert "ComfyUI refused" in error["message"]
    [detail] = error["details"]
    assert (detail["node_id"], detail["class_type"], detail["input"], detail["type"]) == (
        "1",
        "EmptyImage",
        "width",
        "value_smaller_than_min",
    )
