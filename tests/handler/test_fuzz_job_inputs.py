"""Property: no job input, however malformed, crashes the handler or writes outside its folder."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from comfyui_standin import StandinComfyUI
from handler.worker import Worker
from tests.helpers import load_invert_save, png_bytes

HOSTILE_NAMES = st.sampled_from(
    [
        "../x.png",
        "/etc/passwd",
        "a/../../b.png",
        "..",
        ".",
        "a\\b.png",
        "a\x00b",
        "C:/x",
        "a//b",
        " a.png",
        "masks/ok.png",
        "ok.png",
        "x" * 2000,
        "runpod-jobs/../../y.png",
        "~/.ssh/id_rsa",
        "%2e%2e/x",
    ]
)
JSON_LEAF = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20)
JSON = st.recursive(
    JSON_LEAF,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=12,
)
CLASSES = st.sampled_from(
    ["EmptyImage", "SaveImage", "LoadImage", "ImageInvert", "NoSuchNode", "PreviewImage", ""]
)
NODE = st.fixed_dictionaries(
    {"class_type": CLASSES | JSON_LEAF},
    optional={
        "inputs": st.dictionaries(
            st.sampled_from(
                ["image", "images", "width", "height", "color", "batch_size", "filename_prefix", "x"]
            ),
            JSON_LEAF
            | st.tuples(st.sampled_from(["1", "2", "99"]), st.integers(-2, 3)).map(list)
            | HOSTILE_NAMES,
            max_size=5,
        )
        | JSON
    },
)
WORKFLOW = (
    st.dictionaries(st.sampled_from(["1", "2", "3"]), NODE, max_size=3)
    | JSON
    | st.just({"nodes": [], "links": []})
    | st.dictionaries(st.sampled_from(["1", "2"]), NODE).map(json.dumps)
)
FILE_ITEM = st.fixed_dictionaries(
    {},
    optional={
        "name": HOSTILE_NAMES | JSON_LEAF,
        "image": st.sampled_from(
            [base64.b64encode(b"\x89PNG...").decode(), "!!!", "data:image/png;base64,AAAA", ""]
        )
        | JSON_LEAF,
        "url": st.sampled_from(
            [
                "http://127.0.0.1:1/x.png",
                "file:///etc/passwd",
                "ftp://x",
                "http://[::1]/",
                "http://169.254.169.254/",
            ]
        )
        | JSON_LEAF,
        "extra": JSON_LEAF,
    },
)
JOB_INPUT = (
    st.fixed_dictionaries(
        {},
        optional={
            "workflow": WORKFLOW,
            "images": st.lists(FILE_ITEM, max_size=3) | JSON_LEAF,
            "files": st.lists(FILE_ITEM, max_size=2),
            "timeout_s": st.sampled_from([0, -1, 0.5, 1e309, "10", True, None, 10**12]),
            "output": st.fixed_dictionaries(
                {}, optional={"mode": JSON_LEAF | st.sampled_from(["s3", "auto"]), "s3": JSON}
            ),
            "include_temp": JSON_LEAF,
            "unexpected": JSON_LEAF,
        },
    )
    | JSON
)
PNG = base64.b64encode(png_bytes()).decode()


@st.composite
def near_valid_inputs(draw: st.DrawFn) -> dict[str, Any]:
    """A working job with a few things broken: reaches file writing, validation and ComfyUI."""
    name = draw(st.sampled_from(["ok.png", "masks/ok.png"]) | HOSTILE_NAMES)
    workflow = load_invert_save(draw(st.sampled_from([name, "ok.png", "masks/ok.png", "missing.png"])))
    for _ in range(draw(st.integers(0, 2))):
        node = draw(st.sampled_from(["1", "2", "3"]))
        key = draw(st.sampled_from(["image", "images", "filename_prefix", "width"]))
        workflow[node]["inputs"][key] = draw(JSON_LEAF | HOSTILE_NAMES | st.just(["9", 0]))
    files = [{"name": name, "image": PNG}]
    if draw(st.booleans()):
        files.append({"name": "masks/ok.png", "image": PNG})
    return {"workflow": workflow, "images": files, "timeout_s": 3}


JOB_ID = st.sampled_from(["job-1", "../../escape", "a/b", "..", "x" * 300, "sync-1234-u1", ""])


def files_outside_jobs(root: Path, temp_dir: Path) -> set[str]:
    """Every file under the stand-in's root except ComfyUI's own temp folder."""
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and temp_dir not in p.parents and "user" not in p.relative_to(root).parts
    }


@settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    job_input=st.one_of(JOB_INPUT, near_valid_inputs(), near_valid_inputs()),
    job_id=JOB_ID,
    s3_config=st.none() | JSON,
)
def test_malformed_inputs_fail_cleanly(
    worker: Worker, standin: StandinComfyUI, job_input: Any, job_id: str, s3_config: Any
) -> None:
    root = standin.input_dir.parent
    before = files_outside_jobs(root, standin.temp_dir)
    job: dict[str, Any] = {"id": job_id, "input": job_input}
    if s3_config is not None:
        job["s3Config"] = s3_config
    result = asyncio.run(worker.run(job))
    assert isinstance(result, dict)
    if "error" in result:
        error = json.loads(result["error"])
        assert error["code"] != "INTERNAL_ERROR", error
        assert set(error) == {"code", "message", "details", "diagnostics"}
        event(error["code"])
    else:
        event("COMPLETED")
    assert files_outside_jobs(root, standin.temp_dir) == before
