"""Contract: the ComfyUI stand-in answers like the real ComfyUI 0.3.64 did.

Every handler test trusts ``comfyui_standin`` to behave like ComfyUI, so this file pins
that trust to responses captured from a real server (``tests/fixtures/comfyui-captured``):
same keys and value types, the same error ``type``/``message``/``details`` strings, the same
history entry shapes and websocket event order, the same upload and ``/view`` rules, and the
same caching behaviour (an identical prompt writes no new file). Values that differ per run
(ids, timestamps, RAM sizes, tracebacks) are compared by type only.

The last tests run the stand-in as a process, the way a worker's supervisor starts ComfyUI.
"""

from __future__ import annotations

import asyncio
import json
import re
import struct
import time
from collections.abc import AsyncIterator, Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from comfyui_standin import StandinComfyUI, StandinProcess
from comfyui_standin.folders import parse_extra_model_paths
from comfyui_standin.nodes import REAL_OBJECT_INFO

FIXTURES = Path(__file__).parents[1] / "fixtures" / "comfyui-captured"
#: Keys whose values differ between runs: compared by type only.
VOLATILE_KEYS = frozenset(
    {
        "prompt_id",
        "timestamp",
        "client_id",
        "sid",
        "ram_total",
        "ram_free",
        "vram_total",
        "vram_free",
        "torch_vram_total",
        "torch_vram_free",
        "python_version",
        "argv",
        "traceback",
    }
)
MODELS = {"checkpoints": ["sd15-example.safetensors"], "loras": ["style-example.safetensors"]}


EXECUTION_ERROR_FIELDS = (
    "prompt_id",
    "node_id",
    "node_type",
    "executed",
    "exception_message",
    "exception_type",
    "traceback",
    "current_inputs",
    "current_outputs",
    "timestamp",
)


def captured(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def assert_like(
    actual: Any,
    expected: Any,
    path: str = "$",
    *,
    subset: bool = False,
    volatile: frozenset[str] = VOLATILE_KEYS,
) -> None:
    """``actual`` matches a captured value.

    Dicts need the same keys, or a superset where the capture is trimmed (``subset``, or a
    nested ``"_note": "trimmed"``); lists the same length; scalars equality, except for
    ``volatile`` keys, prompt ids (any UUID) and placeholders (``"<prompt>"``,
    ``"e3a62d83-..."``), which only need the same type.
    """
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected an object, got {actual!r}"
        keys = set(expected) - {"_note"}
        if subset or expected.get("_note") == "trimmed":
            assert keys <= set(actual), f"{path}: missing {keys - set(actual)}"
        else:
            assert keys == set(actual), f"{path}: keys {sorted(actual)} != captured {sorted(keys)}"
        for key in keys:
            if key in volatile:
                assert type(actual[key]) is type(expected[key]), f"{path}.{key}: type differs"
            else:
                assert_like(actual[key], expected[key], f"{path}.{key}", subset=subset, volatile=volatile)
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{path}: expected a list, got {actual!r}"
        assert len(actual) == len(expected), f"{path}: {len(actual)} items, captured {len(expected)}"
        for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_like(a, e, f"{path}[{index}]", subset=subset, volatile=volatile)
    elif isinstance(expected, str) and (expected.startswith("<") and expected.endswith(">")):
        pass  # "<prompt>": a placeholder for whatever the server sent
    elif isinstance(expected, str) and (UUID.fullmatch(expected) or expected.endswith("-...")):
        assert isinstance(actual, str) and UUID.fullmatch(actual), f"{path}: {actual!r} is no prompt id"
    else:
        assert actual == expected, f"{path}: {actual!r} != captured {expected!r}"


def assert_matches_capture(actual: Any, name: str) -> None:
    """Status-less check of a body against ``name``'s captured response."""
    expected = captured(name)
    assert_like(actual, expected["response"], subset=expected.get("_note") == "trimmed")


def png(color: tuple[int, int, int], size: tuple[int, int] = (32, 24)) -> bytes:
    buffer = BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def node(class_type: str, **inputs: Any) -> dict[str, Any]:
    """One API-format node."""
    return {"class_type": class_type, "inputs": inputs}


def empty_image(
    width: Any = 64, height: int = 48, batch_size: int = 1, color: int = 3368703
) -> dict[str, Any]:
    """EmptyImage; ``width`` may be anything, to provoke validation errors."""
    return node("EmptyImage", width=width, height=height, batch_size=batch_size, color=color)


def empty_save(prefix: str = "sample/empty") -> dict[str, Any]:
    """The captured EmptyImage(64x48) -> SaveImage workflow."""
    return {"1": empty_image(), "2": node("SaveImage", images=["1", 0], filename_prefix=prefix)}


@pytest.fixture
def comfy(tmp_path: Path) -> Iterator[StandinComfyUI]:
    """A stand-in set up like the captured server: --cpu, one checkpoint, one LoRA."""
    with StandinComfyUI(tmp_path / "comfyui", models=MODELS, extra_args=["--cpu"]) as server:
        yield server


@pytest.fixture
async def http(comfy: StandinComfyUI) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(comfy.url) as session:
        yield session


async def post_json(http: aiohttp.ClientSession, path: str, body: Any) -> tuple[int, Any]:
    async with http.post(path, json=body) as response:
        text = await response.text()
        return response.status, (json.loads(text) if text else "")


async def queue_prompt(http: aiohttp.ClientSession, prompt: dict[str, Any], **extra: Any) -> str:
    status, body = await post_json(http, "/prompt", {"prompt": prompt, **extra})
    assert status == 200, body
    prompt_id: str = body["prompt_id"]
    return prompt_id


async def history_entry(comfy: StandinComfyUI, prompt_id: str) -> dict[str, Any]:
    return await asyncio.to_thread(comfy.wait_for_history, prompt_id)


async def ws_until_idle(ws: aiohttp.ClientWebSocketResponse, prompt_id: str) -> list[dict[str, Any]]:
    """Text frames until ``executing`` with ``node: null`` for ``prompt_id``."""
    frames: list[dict[str, Any]] = []
    while True:
        message = await ws.receive(timeout=10)
        if message.type is aiohttp.WSMsgType.BINARY:
            continue
        assert message.type is aiohttp.WSMsgType.TEXT, message
        frame = json.loads(message.data)
        frames.append(frame)
        data = frame["data"]
        if frame["type"] == "executing" and data["node"] is None and data["prompt_id"] == prompt_id:
            return frames


# -- /system_stats, /object_info, small routes -----------------------------------------------------


async def test_system_stats_has_the_captured_shape(
    comfy: StandinComfyUI, http: aiohttp.ClientSession
) -> None:
    async with http.get("/system_stats") as response:
        stats = await response.json()
    assert_like(stats, captured("system_stats_200_cpu")["response"])
    assert stats["system"]["argv"] == ["main.py", "--listen", "127.0.0.1", "--port", "0", "--cpu"]
    async with http.get("/api/system_stats") as response:
        assert (await response.json())["system"]["comfyui_version"] == "0.3.64"


async def test_object_info_entries_are_the_captured_ones(
    http: aiohttp.ClientSession, comfy: StandinComfyUI
) -> None:
    """With the captured server's files present, every emulated core node is identical."""
    (comfy.input_dir / "top.png").write_bytes(png((0, 0, 255)))
    async with http.get("/object_info") as response:
        info = await response.json()
    for class_type, expected in REAL_OBJECT_INFO.items():
        assert info[class_type] == expected, class_type
    assert {name for name, entry in info.items() if entry["category"] == "standin/testing"} >= {
        "StandinSleep",
        "StandinHang",
        "StandinCrash",
        "StandinRaise",
        "StandinDropWebsockets",
    }
    async with http.get("/object_info/NoSuchNode") as response:
        assert (response.status, await response.json()) == (200, {})
    async with http.get("/api/object_info/KSampler") as response:
        assert await response.json() == {"KSampler": REAL_OBJECT_INFO["KSampler"]}


async def test_small_routes(http: aiohttp.ClientSession, comfy: StandinComfyUI) -> None:
    async with http.get("/prompt") as response:
        assert await response.json() == {"exec_info": {"queue_remaining": 0}}
    async with http.get("/features") as response:
        assert await response.json() == {"supports_preview_metadata": True, "max_upload_size": 104857600}
    async with http.get("/models") as response:
        assert "checkpoints" in await response.json()
    async with http.get("/models/checkpoints") as response:
        assert await response.json() == ["sd15-example.safetensors"]
    async with http.get("/models/clip") as response:  # aliases are not keys
        assert response.status == 404
    async with http.get("/embeddings") as response:
        assert await response.json() == []
    async with http.get("/internal/folder_paths") as response:
        folders = await response.json()
    assert folders["checkpoints"] == [
        str(comfy.models_dir / "checkpoints"),
        str(comfy.output_dir / "checkpoints"),
    ]
    assert folders["text_encoders"][:2] == [
        str(comfy.models_dir / "text_encoders"),
        str(comfy.models_dir / "clip"),
    ]
    for path, body in (("/interrupt", {}), ("/free", {"free_memory": False}), ("/queue", {"clear": True})):
        assert await post_json(http, path, body) == (200, "")


async def test_foreign_origin_on_loopback_is_refused(
    http: aiohttp.ClientSession, comfy: StandinComfyUI
) -> None:
    async with http.post(
        "/prompt", json={"prompt": empty_save()}, headers={"Origin": "http://evil.example.com"}
    ) as response:
        assert (response.status, await response.text()) == (403, "")
    async with http.get("/api/system_stats", headers={"Origin": "http://evil.example.com"}) as response:
        assert response.status == 403
    async with http.post("/prompt", json={"prompt": empty_save()}, headers={"Origin": comfy.url}) as response:
        assert response.status == 200


# -- POST /prompt validation -------------------------------------------------------------------------

PROMPT_CASES: dict[str, dict[str, Any]] = {
    "prompt_400_no_prompt": {"client_id": "x"},
    "prompt_400_invalid_prompt_unknown_class": {"prompt": {"1": node("NoSuchNode")}},
    "prompt_400_invalid_prompt_missing_class_type": {"prompt": {"1": {"inputs": {}}}},
    "prompt_400_prompt_no_outputs": {"prompt": {"1": empty_image()}},
    "prompt_400_required_input_missing": {
        "prompt": {**empty_save(), "2": node("SaveImage", filename_prefix="x")}
    },
    "prompt_400_value_smaller_than_min": {"prompt": {**empty_save(), "1": empty_image(width=0)}},
    "prompt_400_invalid_input_type": {"prompt": {**empty_save(), "1": empty_image(width="abc")}},
    "prompt_400_return_type_mismatch": {
        "prompt": {**empty_save(), "1": node("EmptyLatentImage", width=64, height=64, batch_size=1)}
    },
    "prompt_400_exception_during_validation_link_to_missing_node": {
        "prompt": {"2": node("SaveImage", images=["99", 0], filename_prefix="x")}
    },
    "prompt_400_custom_validation_failed_loadimage_missing_file": {
        "prompt": {**empty_save(), "1": node("LoadImage", image="runpod/nope/missing.png")}
    },
}


@pytest.mark.parametrize("case", sorted(PROMPT_CASES))
async def test_prompt_errors_match_the_captured_bodies(http: aiohttp.ClientSession, case: str) -> None:
    expected = captured(case)
    status, body = await post_json(http, "/prompt", PROMPT_CASES[case])
    assert status == expected["status"]
    assert_matches_capture(body, case)


async def test_unknown_checkpoint_without_checkpoints(tmp_path: Path) -> None:
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "does_not_exist.safetensors"}},
        "6": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }
    with StandinComfyUI(tmp_path / "bare") as bare:
        async with aiohttp.ClientSession(bare.url) as http:
            status, body = await post_json(http, "/prompt", {"prompt": prompt})
    assert status == 400
    assert_matches_capture(body, "prompt_400_value_not_in_list_ckpt_no_checkpoints")


async def test_unknown_checkpoint_with_one_from_extra_model_paths(tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    (volume / "models" / "checkpoints").mkdir(parents=True)
    (volume / "models" / "checkpoints" / "fake.safetensors").write_bytes(b"x")
    config = tmp_path / "extra_model_paths.yaml"
    config.write_text(
        f"runpod:\n    base_path: {volume}\n    checkpoints: models/checkpoints/  # the volume\n"
    )
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "nope.safetensors"}},
        "6": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }
    with StandinComfyUI(tmp_path / "comfy", extra_args=["--extra-model-paths-config", str(config)]) as server:
        async with aiohttp.ClientSession(server.url) as http:
            status, body = await post_json(http, "/prompt", {"prompt": prompt})
    assert status == 400
    assert_matches_capture(body, "prompt_400_value_not_in_list_ckpt_one_checkpoint")


async def test_long_option_lists_are_not_echoed(http: aiohttp.ClientSession) -> None:
    prompt = {
        **empty_save(),
        "1": {
            "class_type": "ImageScaleBy",
            "inputs": {"image": ["3", 0], "upscale_method": "magic", "scale_by": 9.0},
        },
        "3": empty_save()["1"],
        "4": {"class_type": "KSampler", "inputs": {"sampler_name": "nope"}},
        "5": {"class_type": "PreviewAny", "inputs": {"source": ["4", 0]}},
    }
    status, body = await post_json(http, "/prompt", {"prompt": prompt})
    assert status == 400
    [scale_method, scale_by] = body["node_errors"]["1"]["errors"]
    assert (
        scale_method["details"]
        == "upscale_method: 'magic' not in ['nearest-exact', 'bilinear', 'area', 'bicubic', 'lanczos']"
    )
    assert scale_method["extra_info"]["input_config"] == [
        ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"],
        {},
    ]
    assert (scale_by["type"], scale_by["message"]) == (
        "value_bigger_than_max",
        "Value 9.0 bigger than max of 8.0",
    )
    sampler = {e["extra_info"]["input_name"]: e for e in body["node_errors"]["4"]["errors"]}
    assert sampler["sampler_name"]["details"] == "sampler_name: 'nope' not in (list of length 42)"
    assert sampler["sampler_name"]["extra_info"]["input_config"] is None
    assert sampler["model"]["type"] == "required_input_missing"


async def test_partially_invalid_prompt_still_runs(
    http: aiohttp.ClientSession, comfy: StandinComfyUI
) -> None:
    prompt = {**empty_save(), "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "broken"}}}
    status, body = await post_json(http, "/prompt", {"prompt": prompt})
    expected = captured("prompt_200_partial_node_errors_required_input_missing")
    assert status == 200
    assert_like(body, expected["response"], volatile=VOLATILE_KEYS | {"number"})
    entry = await history_entry(comfy, body["prompt_id"])
    assert entry["prompt"][4] == ["2"] and set(entry["outputs"]) == {"2"}


async def test_prompt_options_number_front_and_partial_targets(
    http: aiohttp.ClientSession, comfy: StandinComfyUI
) -> None:
    status, body = await post_json(
        http, "/prompt", {"prompt": empty_save(), "prompt_id": "mine", "number": 5}
    )
    assert (status, body) == (200, {"prompt_id": "mine", "number": 5.0, "node_errors": {}})
    two_outputs = {
        **empty_save("a"),
        "3": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "b"}},
    }
    first = await queue_prompt(http, two_outputs, partial_execution_targets=["3"])
    entry = await history_entry(comfy, first)
    assert (entry["prompt"][0], entry["prompt"][4], list(entry["outputs"])) == (0, ["3"], ["3"])
    _, front = await post_json(http, "/prompt", {"prompt": empty_save(), "front": True})
    assert front["number"] == -1


# -- history shapes ------------------------------------------------------------------------------------


async def test_success_history_and_websocket_order_match_the_capture(
    http: aiohttp.ClientSession, comfy: StandinComfyUI
) -> None:
    client_id = "4dffe7d024594408bfc3f56d38a1629c"
    async with http.ws_connect(f"/ws?clientId={client_id}") as ws:
        _, body = await post_json(http, "/prompt", {"prompt": empty_save(), "client_id": client_id})
        assert_matches_capture(body, "prompt_200_success")
        frames = await ws_until_idle(ws, body["prompt_id"])
    expected_frames = captured("ws_message_sequence_emptyimage_saveimage")["response"]
    assert [f["type"] for f in frames] == [f["type"] for f in expected_frames]
    for frame, expected in zip(frames, expected_frames, strict=True):
        for key, value in expected.get("data", {}).items():
            assert frame["data"][key] == value
    assert frames[0]["data"]["sid"] == "4dffe7d024594408bfc3f56d38a1629c"
    async with http.get(f"/history/{body['prompt_id']}") as response:
        history = await response.json()
    [expected_entry] = captured("history_200_success_emptyimage_saveimage")["response"].values()
    assert_like(history[body["prompt_id"]], expected_entry)
    with Image.open(comfy.output_dir / "sample" / "empty_00001_.png") as image:
        assert (image.size, image.getpixel((0, 0))) == ((64, 48), (0x33, 0x66, 0xFF))


async def test_history_listing_delete_and_unknown_ids(
    http: aiohttp.ClientSession, comfy: StandinComfyUI
) -> None:
    ids = [await queue_prompt(http, empty_save(f"h{i}")) for i in range(3)]
    await history_entry(comfy, ids[-1])
    async with http.get("/history", params={"max_items": "2"}) as response:
        assert list(await response.json()) == ids[1:]
    async with http.get("/history", params={"max_items": "1", "offset": "0"}) as response:
        assert list(await response.json()) == ids[:1]
    assert await post_json(http, "/history", {"delete": [ids[0]]}) == (200, "")
    for prompt_id in (ids[0], "no-such-id"):
        async with http.get(f"/history/{prompt_id}") as response:
            assert (response.status, await response.json()) == (
                200,
                captured("history_200_unknown_or_deleted_id")["response"],
            )
    await post_json(http, "/history", {"clear": True})
    assert comfy.history() == {}


async def test_corrupt_input_gives_the_captured_execution_error(
    http: aiohttp.ClientSession, comfy: StandinComfyUI
) -> None:
    (comfy.input_dir / "runpod" / "job123").mkdir(parents=True)
    (comfy.input_dir / "runpod" / "job123" / "broken.png").write_text("not a png")
    prompt = {
        "20": {"class_type": "LoadImage", "inputs": {"image": "runpod/job123/broken.png"}},
        "21": {"class_type": "SaveImage", "inputs": {"images": ["20", 0], "filename_prefix": "x"}},
    }
    status, body = await post_json(http, "/prompt", {"prompt": prompt, "client_id": "c"})
    assert (status, body["node_errors"]) == (200, {})
    entry = await history_entry(comfy, body["prompt_id"])
    error = entry["status"]["messages"][2][1]
    error["exception_message"] = error["exception_message"].replace(str(comfy.root), "<scratch>/comfyui")
    assert all(isinstance(line, str) for line in error["traceback"]) and error["traceback"]
    assert_matches_capture(entry, "history_200_execution_error_loadimage_corrupt_file")


async def test_interrupt_gives_the_captured_history_and_the_front_prompt_runs_next(
    http: aiohttp.ClientSession, comfy: StandinComfyUI
) -> None:
    """An uninterruptible upscale notices the interrupt when it finishes (~1.5 s here)."""
    slow = {
        "1": empty_image(256, 256, batch_size=6, color=0),
        "2": node("ImageScaleBy", image=["1", 0], upscale_method="lanczos", scale_by=8.0),
        "4": node("SaveImage", images=["2", 0], filename_prefix="big"),
    }
    async with http.ws_connect("/ws?clientId=watcher") as ws:
        running = await queue_prompt(http, slow, client_id="watcher")
        while True:  # wait until node 2 runs
            message = await ws.receive_json(timeout=10)
            if message["type"] == "executing" and message["data"]["node"] == "2":
                break
    assert await post_json(http, "/interrupt", {"prompt_id": running}) == (200, "")
    front = await queue_prompt(http, empty_save(), client_id="watcher", front=True)
    async with http.get("/queue") as response:
        queue = await response.json()
    expected = captured("queue_200_running_and_front_pending")["response"]
    expected["queue_running"][0][0], expected["queue_pending"][0][0] = 0, -1  # captured: 20, -21
    assert_like(queue, expected)
    entry = await history_entry(comfy, running)
    assert_matches_capture(entry, "history_200_interrupted_imagescaleby")
    assert entry["outputs"] == {} and not (comfy.output_dir / "big_00001_.png").exists()
    assert (await history_entry(comfy, front))["status"]["status_str"] == "success"


async def test_interrupt_for_another_prompt_is_ignored(
    http: aiohttp.ClientSession, comfy: StandinComfyUI
) -> None:
    prompt_id = await queue_prompt(http, {"1": {"class_type": "StandinSleep", "inputs": {"seconds": 0.3}}})
    await post_json(http, "/interrupt", {"prompt_id": "someone-else"})
    assert (await history_entry(comfy, prompt_id))["status"]["status_str"] == "success"


# -- uploads and /view -------------------------------------------------------------------------------


async def upload(http: aiohttp.ClientSession, name: str, data: bytes, **fields: str) -> tuple[int, Any]:
    form = aiohttp.FormData()
    form.add_field("image", data, filename=name, content_type="image/png")
    for key, value in fields.items():
        form.add_field(key, value)
    async with http.post("/upload/image", data=form) as response:
        text = await response.text()
        return response.status, (json.loads(text) if text else "")


async def test_uploads_dedupe_rename_overwrite_and_refuse_escapes(
    http: aiohttp.ClientSession, comfy: StandinComfyUI
) -> None:
    green, red = png((0, 255, 0)), png((255, 0, 0))
    cases = [
        ("upload_image_200_subfolder", await upload(http, "sample.png", green, subfolder="runpod/job123")),
        (
            "upload_image_200_same_bytes_deduplicated",
            await upload(http, "sample.png", green, subfolder="runpod/job123"),
        ),
        (
            "upload_image_200_different_bytes_renamed",
            await upload(http, "sample.png", red, subfolder="runpod/job123"),
        ),
        (
            "upload_image_200_overwrite_true",
            await upload(http, "sample.png", red, subfolder="runpod/job123", overwrite="true"),
        ),
        ("upload_image_200_no_subfolder", await upload(http, "top.png", green, type="input")),
        ("upload_image_400_subfolder_escape", await upload(http, "e.png", green, subfolder="../escape")),
        ("upload_image_200_type_temp", await upload(http, "t.png", green, type="temp")),
    ]
    for name, (status, body) in cases:
        assert status == captured(name)["status"], name
        assert_matches_capture(body, name)
    assert (comfy.input_dir / "runpod" / "job123" / "sample.png").read_bytes() == red
    assert (comfy.input_dir / "runpod" / "job123" / "sample (1).png").read_bytes() == red
    assert not (comfy.root / "escape").exists() and (comfy.temp_dir / "t.png").exists()
    async with http.get("/object_info/LoadImage") as response:
        options = (await response.json())["LoadImage"]["input"]["required"]["image"][0]
    assert (
        options == captured("object_info_loadimage_image_options_after_uploads")["response"]["image_options"]
    )


async def test_load_invert_save_preview_and_view(http: aiohttp.ClientSession, comfy: StandinComfyUI) -> None:
    await upload(http, "sample.png", png((0, 255, 0)), subfolder="runpod/job123")
    prompt = {
        "11": {"class_type": "LoadImage", "inputs": {"image": "runpod/job123/sample.png"}},
        "10": {"class_type": "ImageInvert", "inputs": {"image": ["11", 0]}},
        "12": {
            "class_type": "SaveImage",
            "inputs": {"images": ["10", 0], "filename_prefix": "sample/inverted"},
        },
        "13": {"class_type": "PreviewImage", "inputs": {"images": ["10", 0]}},
    }
    prompt_id = await queue_prompt(http, prompt, extra_data={"extra_pnginfo": {"workflow": {"nodes": []}}})
    outputs = (await history_entry(comfy, prompt_id))["outputs"]
    temp_name = outputs["13"]["images"][0]["filename"]
    assert re.fullmatch(r"ComfyUI_temp_[a-z]{5}_00001_\.png", temp_name)
    expected = captured("history_outputs_loadimage_invert_save_preview")["response"]["outputs"]
    expected["13"]["images"][0]["filename"] = temp_name
    assert outputs == expected

    view = captured("view_200_output_png")
    async with http.get("/view", params=view["request"]["query"]) as response:
        assert (response.status, response.content_type) == (200, view["response"]["content_type"])
        assert response.headers["Content-Disposition"] == 'filename="inverted_00001_.png"'
        image = Image.open(BytesIO(await response.read()))
    assert list(image.size) == view["response"]["image_size"]
    assert image.convert("RGB").getpixel((0, 0)) == tuple(view["response"]["pixel_0_0_rgb"])
    assert sorted(image.text) == view["response"]["png_text_keys"]  # type: ignore[attr-defined]
    async with http.get("/view", params={**view["request"]["query"], "preview": "webp;50"}) as response:
        assert (response.status, response.content_type) == (200, "image/webp")
    async with http.get("/view", params={"filename": temp_name, "type": "temp", "subfolder": ""}) as response:
        assert response.status == 200
    for name, params in (
        (
            "view_200_filename_annotation_output",
            {"filename": "inverted_00001_.png [output]", "subfolder": "sample"},
        ),
        ("view_400_filename_traversal", {"filename": "../main.py"}),
        ("view_403_subfolder_escape", {"filename": "main.py", "subfolder": "../../"}),
        ("view_404_missing_file", {"filename": "nope.png"}),
    ):
        async with http.get("/view", params=params) as response:
            assert response.status == captured(name)["status"], name


# -- caching -------------------------------------------------------------------------------------------


async def test_identical_prompt_is_cached_until_free_memory(
    http: aiohttp.ClientSession, comfy: StandinComfyUI
) -> None:
    """Reference 10.6: the second run writes nothing and points at the first file."""
    entries = []
    for _ in range(2):
        entries.append(await history_entry(comfy, await queue_prompt(http, empty_save("c"))))
    assert [e["status"]["messages"][1][1]["nodes"] for e in entries] == [[], ["1", "2"]]
    assert [e["outputs"]["2"]["images"][0]["filename"] for e in entries] == ["c_00001_.png"] * 2
    assert sorted(p.name for p in comfy.output_dir.glob("c_*")) == ["c_00001_.png"]
    assert comfy.executed_count("SaveImage") == 1
    assert await post_json(http, "/free", {"unload_models": True, "free_memory": True}) == (200, "")
    third = await history_entry(comfy, await queue_prompt(http, empty_save("c")))
    assert third["status"]["messages"][1][1]["nodes"] == []
    assert third["outputs"]["2"]["images"][0]["filename"] == "c_00002_.png"
    assert comfy.executed_count("EmptyImage") == 2


async def test_changed_input_file_and_cache_none_run_again(tmp_path: Path) -> None:
    with StandinComfyUI(tmp_path / "c", extra_args=["--cache-none"]) as server:
        async with aiohttp.ClientSession(server.url) as http:
            for _ in range(2):
                await history_entry(server, await queue_prompt(http, empty_save("n")))
        assert server.executed_count("SaveImage") == 2
    with StandinComfyUI(tmp_path / "d") as server:
        (server.input_dir / "in.png").write_bytes(png((1, 2, 3)))
        prompt = {
            "1": {"class_type": "LoadImage", "inputs": {"image": "in.png"}},
            "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 1]}},
        }
        async with aiohttp.ClientSession(server.url) as http:
            await history_entry(server, await queue_prompt(http, prompt))
            await history_entry(server, await queue_prompt(http, prompt))
            (server.input_dir / "in.png").write_bytes(png((4, 5, 6)))
            await history_entry(server, await queue_prompt(http, prompt))
        assert server.executed_count("LoadImage") == 2


# -- other nodes and faults ------------------------------------------------------------------------------


async def test_sampler_pipeline_reports_progress_per_step(
    http: aiohttp.ClientSession, comfy: StandinComfyUI
) -> None:
    lora = {"lora_name": "style-example.safetensors", "strength_model": 1.0, "strength_clip": 1.0}
    sampler = {
        "seed": 7,
        "steps": 3,
        "cfg": 8.0,
        "sampler_name": "euler",
        "scheduler": "normal",
        "denoise": 1.0,
    }
    prompt = {
        "4": node("CheckpointLoaderSimple", ckpt_name="sd15-example.safetensors"),
        "10": node("LoraLoader", model=["4", 0], clip=["4", 1], **lora),
        "6": node("CLIPTextEncode", text="a cat", clip=["10", 1]),
        "7": node("CLIPTextEncode", text="blurry", clip=["10", 1]),
        "5": node("EmptyLatentImage", width=64, height=32, batch_size=2),
        "3": node(
            "KSampler",
            model=["10", 0],
            positive=["6", 0],
            negative=["7", 0],
            latent_image=["5", 0],
            **sampler,
        ),
        "8": node("VAEDecode", samples=["3", 0], vae=["4", 2]),
        "9": node("SaveImage", images=["8", 0], filename_prefix="sd"),
    }
    async with http.ws_connect("/ws?clientId=sd") as ws:
        prompt_id = await queue_prompt(http, prompt, client_id="sd")
        frames = await ws_until_idle(ws, prompt_id)
    progress = [
        (f["data"]["value"], f["data"]["max"], f["data"]["node"]) for f in frames if f["type"] == "progress"
    ]
    assert progress == [(1, 3, "3"), (2, 3, "3"), (3, 3, "3")]
    outputs = (await history_entry(comfy, prompt_id))["outputs"]
    assert [i["filename"] for i in outputs["9"]["images"]] == ["sd_00001_.png", "sd_00002_.png"]
    with Image.open(comfy.output_dir / "sd_00001_.png") as image:
        assert image.size == (64, 32)


async def test_output_kinds_in_history(http: aiohttp.ClientSession, comfy: StandinComfyUI) -> None:
    webp = {"fps": 6.0, "lossless": True, "quality": 80, "method": "default"}
    video = {"frame_rate": 8, "format": "video/h264-mp4", "save_output": True}
    prompt = {
        "1": empty_image(16, 16, batch_size=2, color=255),
        "2": node("SaveAnimatedWEBP", images=["1", 0], filename_prefix="anim", **webp),
        "3": node("PreviewAny", source=16),
        "4": node("StandinVideoCombine", images=["1", 0], filename_prefix="vid/clip", **video),
        "5": node("StandinSaveAudio", filename_prefix="audio/tone", seconds=0.05),
        "6": node("StandinSaveText", text="hello", filename_prefix="notes/t"),
    }
    outputs = (await history_entry(comfy, await queue_prompt(http, prompt)))["outputs"]
    assert outputs["2"] == {
        "images": [{"filename": "anim_00001_.webp", "subfolder": "", "type": "output"}],
        "animated": [True],
    }
    assert outputs["3"] == captured("history_outputs_previewany_text")["response"]["outputs"]["4"]
    assert outputs["4"]["gifs"] == [
        {
            "filename": "clip_00001.mp4",
            "subfolder": "vid",
            "type": "output",
            "format": "video/h264-mp4",
            "frame_rate": 8.0,
            "workflow": "clip_00001.png",
            "fullpath": str(comfy.output_dir / "vid" / "clip_00001.mp4"),
        }
    ]
    assert outputs["5"] == {
        "audio": [{"filename": "tone_00001_.wav", "subfolder": "audio", "type": "output"}]
    }
    assert outputs["6"] == {
        "text_files": [{"filename": "t_00001_.txt", "subfolder": "notes", "type": "output"}]
    }
    assert (comfy.output_dir / "notes" / "t_00001_.txt").read_text() == "hello"
    async with http.get("/view", params={"filename": "tone_00001_.wav", "subfolder": "audio"}) as response:
        assert (response.status, response.content_type) == (200, "audio/x-wav")


async def test_raise_crash_and_oom_are_execution_errors(
    http: aiohttp.ClientSession, comfy: StandinComfyUI
) -> None:
    oom = "torch.OutOfMemoryError"
    cases = [
        ({"1": node("StandinRaise", message="boom", exception_type="ValueError")}, "ValueError", "boom\n"),
        (
            {"1": node("StandinRaise", message="OOM", exception_type=oom)},
            oom,
            "OOM\nThis error means you ran out",
        ),
        (
            {"1": node("StandinCrash", exit_code=3, signal="none")},
            "RuntimeError",
            "StandinCrash needs the stand-in",
        ),
        (
            {"1": empty_image(16384, 16384), "2": node("PreviewAny", source=["1", 0])},
            oom,
            "Allocation on device 0 would exceed allowed memory.",
        ),
    ]
    for prompt, exception_type, message_start in cases:
        async with http.ws_connect("/ws?clientId=err") as ws:
            prompt_id = await queue_prompt(http, prompt, client_id="err")
            frames = await ws_until_idle(ws, prompt_id)
        [error] = [f["data"] for f in frames if f["type"] == "execution_error"]
        assert (error["node_id"], error["node_type"], error["exception_type"]) == (
            "1",
            prompt["1"]["class_type"],
            exception_type,
        )
        assert error["exception_message"].startswith(message_start)
        assert set(error) == set(EXECUTION_ERROR_FIELDS)
        entry = comfy.history(prompt_id)[prompt_id]
        assert (entry["status"]["status_str"], entry["status"]["completed"]) == ("error", False)


async def test_sleep_is_interruptible_and_hang_is_not(
    http: aiohttp.ClientSession, comfy: StandinComfyUI
) -> None:
    async with http.ws_connect("/ws?clientId=s") as ws:
        sleep_id = await queue_prompt(
            http, {"1": {"class_type": "StandinSleep", "inputs": {"seconds": 30}}}, client_id="s"
        )
        while True:
            message = await ws.receive(timeout=10)
            if message.type is aiohttp.WSMsgType.BINARY:  # progress text: type 3, node id, text
                (kind, length), node = struct.unpack(">II", message.data[:8]), message.data[8:9]
                assert (kind, length, node, message.data[9:]) == (3, 1, b"1", b"sleeping 30 s")
            elif json.loads(message.data)["type"] == "progress":
                break
        await post_json(http, "/interrupt", {})
        frames = await ws_until_idle(ws, sleep_id)
    [interrupted] = [f["data"] for f in frames if f["type"] == "execution_interrupted"]
    assert (interrupted["node_id"], interrupted["node_type"], interrupted["executed"]) == (
        "1",
        "StandinSleep",
        [],
    )

    hang_id = await queue_prompt(http, {"1": {"class_type": "StandinHang", "inputs": {}}})
    await asyncio.sleep(0.05)
    await post_json(http, "/interrupt", {"prompt_id": hang_id})
    await asyncio.sleep(0.2)
    assert comfy.history(hang_id) == {}
    assert [item[1] for item in comfy.queue()["queue_running"]] == [hang_id]


async def test_feature_flags_exchange(http: aiohttp.ClientSession) -> None:
    async with http.ws_connect("/ws") as ws:
        first = await ws.receive_json()
        assert first["type"] == "status" and len(first["data"]["sid"]) == 32
        await ws.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
        flags = await ws.receive_json(timeout=5)
    assert_matches_capture(flags, "ws_feature_flags_exchange")
    assert flags["data"] == {"supports_preview_metadata": True, "max_upload_size": 104857600}


@pytest.mark.parametrize("mode", ["abort", "close"])
async def test_dropped_websockets_get_events_up_to_the_drop(
    http: aiohttp.ClientSession, comfy: StandinComfyUI, mode: str
) -> None:
    prompt = {
        **empty_save("d"),
        "3": {"class_type": "StandinDropWebsockets", "inputs": {"mode": mode, "images": ["1", 0]}},
    }
    prompt["2"]["inputs"]["images"] = ["3", 0]
    async with http.ws_connect("/ws?clientId=f") as ws:
        prompt_id = await queue_prompt(http, prompt, client_id="f")
        frames = []
        while (message := await ws.receive(timeout=10)).type is aiohttp.WSMsgType.TEXT:
            frames.append(json.loads(message.data))
    assert frames[-1]["type"] == "executing" and frames[-1]["data"]["node"] == "3"
    assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
    entry = await history_entry(comfy, prompt_id)
    assert (
        entry["status"]["status_str"] == "success"
        and entry["outputs"]["2"]["images"][0]["filename"] == "d_00001_.png"
    )


async def test_undeclared_link_to_a_missing_node_stops_the_worker_like_comfyui(
    http: aiohttp.ClientSession, comfy: StandinComfyUI
) -> None:
    """Validation only follows declared inputs; ComfyUI's prompt thread then dies on the link."""
    prompt = empty_save("w")
    prompt["1"]["inputs"]["not_an_input"] = ["99", 0]
    stuck = await queue_prompt(http, prompt)
    waiting = await queue_prompt(http, empty_save("w2"))
    await asyncio.sleep(0.2)
    queue = comfy.queue()
    assert [item[1] for item in queue["queue_running"]] == [stuck]
    assert [item[1] for item in queue["queue_pending"]] == [waiting]
    assert comfy.history() == {}


async def test_restart_keeps_port_and_files_but_forgets_state(tmp_path: Path) -> None:
    with StandinComfyUI(tmp_path / "r") as server:
        async with aiohttp.ClientSession() as http:
            prompt_id = await queue_prompt_at(http, server.url, empty_save("r"))
            await history_entry(server, prompt_id)
            port = server.port
            await asyncio.to_thread(server.restart)
            assert server.port == port and server.history() == {}
            assert (server.output_dir / "r_00001_.png").exists()
            second = await queue_prompt_at(http, server.url, empty_save("r"))
            entry = await history_entry(server, second)
        assert entry["outputs"]["2"]["images"][0]["filename"] == "r_00002_.png"
        assert [r.path for r in server.requests if r.method == "POST"] == ["/prompt", "/prompt"]


async def queue_prompt_at(http: aiohttp.ClientSession, url: str, prompt: dict[str, Any]) -> str:
    async with http.post(f"{url}/prompt", json={"prompt": prompt}) as response:
        body = await response.json()
    return str(body["prompt_id"])


def test_extra_model_paths_yaml_like_comfyui(tmp_path: Path) -> None:
    """Reference section 6: with is_default each line goes first, so the last line wins."""
    config = tmp_path / "extra.yaml"
    config.write_text(
        f"# comment\ncomfyui:\n    base_path: {tmp_path}/vol/../vol/\n    is_default: true\n    loras: |\n"
        "        models/loras\n        models/lycoris\n    unet: 'models/unet'  # legacy name\nempty:\n"
    )
    section = {
        "base_path": f"{tmp_path}/vol/../vol/",
        "is_default": True,
        "loras": "models/loras\nmodels/lycoris\n",
        "unet": "models/unet",
    }
    assert parse_extra_model_paths(config.read_text()) == {"comfyui": section, "empty": None}
    with StandinComfyUI(
        tmp_path / "ComfyUI", extra_args=["--extra-model-paths-config", str(config)]
    ) as server:
        folders = server.settings.paths.folder_paths_json()
    vol = tmp_path / "vol" / "models"
    defaults = [str(server.models_dir / "loras"), str(server.output_dir / "loras")]
    assert folders["loras"] == [str(vol / "lycoris"), str(vol / "loras"), *defaults]
    assert folders["diffusion_models"][0] == str(vol / "unet")


# -- process mode --------------------------------------------------------------------------------------


async def test_process_mode_boots_like_comfyui_and_crashes_on_request(tmp_path: Path) -> None:
    io = tmp_path / "io"
    args = [
        *("--input-directory", str(io / "input"), "--output-directory", str(io / "output")),
        *("--temp-directory", str(io), "--disable-auto-launch", "--disable-metadata", "--cpu"),
        "--unknown-future-flag",
    ]
    spawned_at = time.time()
    # Long enough for "still loading" lines even when the imports are slow (a loaded machine).
    with StandinProcess.spawn(tmp_path / "ComfyUI", args, env={"STANDIN_BOOT_DELAY_S": "3"}) as process:
        listening_at = await asyncio.to_thread(process.wait_listening)
        # The boot delay counts from the process start, imports included (not added to them).
        assert 3.0 <= listening_at - spawned_at < 3.75
        assert any("still loading" in line for line in process.stderr_lines)
        async with aiohttp.ClientSession(process.url) as http:
            async with http.get("/system_stats") as response:
                stats = await response.json()
            assert stats["system"]["argv"][1:] == ["--listen", "127.0.0.1", "--port", "0", *args]
            assert (io / "temp").is_dir()
            await queue_prompt(
                http, {"1": {"class_type": "StandinCrash", "inputs": {"exit_code": 7, "signal": "none"}}}
            )
        assert await asyncio.to_thread(process.wait) == 7
    log = "\n".join(process.stderr_lines)
    for expected in (
        "Total VRAM",
        "Import times for custom nodes:",
        "Starting server",
        "To see the GUI go to: http://127.0.0.1:",
        "unknown arguments: --unknown-future-flag",
        "torch.AcceleratorError: CUDA error",
    ):
        assert expected in log


def test_exit_on_boot_exits_with_the_code(tmp_path: Path) -> None:
    with StandinProcess.spawn(tmp_path / "ComfyUI", env={"STANDIN_EXIT_ON_BOOT": "3"}) as process:
        assert process.wait() == 3
    assert not any(line.startswith("standin: listening") for line in process.stdout_lines)
    assert "Traceback (most recent call last):" in process.stderr_lines
