"""Workflows and small helpers shared by the handler tests."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

from jsonschema import Draft202012Validator
from PIL import Image

from custom_node.job_error import SCHEMA_FILE

#: The job error's one schema (shipped in custom_node/), checked against every payload below.
JOB_ERROR_SCHEMA: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
_JOB_ERROR_VALIDATOR = Draft202012Validator(JOB_ERROR_SCHEMA)


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
