"""Workflows and small helpers shared by the handler tests."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

from PIL import Image


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


def decode_error(result: dict[str, Any]) -> dict[str, Any]:
    assert "error" in result, f"expected a failed job, got {str(result)[:500]}"
    error: dict[str, Any] = json.loads(result["error"])
    return error
