"""Which models a workflow uses: the model file names among its nodes' literal inputs.

An API-format workflow is ``{node_id: {"class_type": ..., "inputs": {name: value}}}``; a list
value is a link to another node, a string may be a model file name relative to its folder
(``sdxl/base.safetensors``; Windows exports use backslashes). A string counts as a model when
it has a model file extension; the input name (``ckpt_name``, ``lora_name``...) says which
folder it belongs in, for the "missing models" report.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_sync.layout import folder_type

MODEL_EXTENSIONS = (
    ".safetensors",
    ".sft",
    ".ckpt",
    ".pt",
    ".pt2",
    ".pth",
    ".bin",
    ".gguf",
    ".onnx",
    ".pkl",
)

# Input names of ComfyUI's core loaders -> the folder type they read.
INPUT_FOLDERS = {
    "ckpt_name": "checkpoints",
    "config_name": "configs",
    "lora_name": "loras",
    "vae_name": "vae",
    "clip_name": "text_encoders",
    "clip_name1": "text_encoders",
    "clip_name2": "text_encoders",
    "clip_name3": "text_encoders",
    "clip_name4": "text_encoders",
    "unet_name": "diffusion_models",
    "clip_vision": "clip_vision",
    "style_model_name": "style_models",
    "control_net_name": "controlnet",
    "gligen_name": "gligen",
    "model_name": "upscale_models",
    "hypernetwork_name": "hypernetworks",
    "audio_encoder_name": "audio_encoders",
    "photomaker_model_name": "photomaker",
}


@dataclass(frozen=True)
class ModelRef:
    """One model a workflow names: the name (relative to its folder) and the expected folder type."""

    name: str
    folder: str | None  # a folder type key, or None when the input name does not say
    node: str
    input: str


def load(path: Path) -> dict[str, Any]:
    """An API-format workflow (a UI-format one, with ``nodes``, is refused: its inputs are positional)."""
    data = json.loads(path.read_text())
    if isinstance(data, dict) and isinstance(data.get("prompt"), dict):
        data = data["prompt"]  # a saved job body
    if not isinstance(data, dict) or "nodes" in data:
        raise ValueError(f"{path}: not an API-format workflow (ComfyUI: Workflow > Export (API))")
    return data


def model_refs(workflow: dict[str, Any]) -> list[ModelRef]:
    """The model files the workflow's literal inputs name, in node order, without duplicates."""
    seen: set[tuple[str, str | None]] = set()
    out: list[ModelRef] = []
    for node_id, node in workflow.items():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if not isinstance(inputs, dict):
            continue
        for name, value in inputs.items():
            if not isinstance(value, str) or not value.lower().endswith(MODEL_EXTENSIONS):
                continue
            ref_name = value.replace("\\", "/").strip("/")
            folder = INPUT_FOLDERS.get(name)
            if (ref_name, folder) not in seen:
                seen.add((ref_name, folder))
                out.append(ModelRef(ref_name, folder, str(node_id), name))
    return out


def _in_folder(relpath: str) -> tuple[str, str]:
    """``clip/x/y.safetensors`` -> (``text_encoders``, ``x/y.safetensors``)."""
    top, _, rest = relpath.partition("/")
    return folder_type(top), rest


def match(refs: Iterable[ModelRef], relpaths: Iterable[str]) -> tuple[set[str], list[ModelRef]]:
    """The relpaths (``<folder>/<file>``) the refs name, and the refs no relpath satisfies.

    A ref matches a file with the same name relative to its folder, preferably in the folder
    type its input name implies.
    """
    index: dict[str, list[tuple[str, str]]] = {}
    for rel in relpaths:
        ftype, name = _in_folder(rel)
        index.setdefault(name, []).append((ftype, rel))
    found: set[str] = set()
    missing: list[ModelRef] = []
    for ref in refs:
        candidates = index.get(ref.name, [])
        hits = [rel for ftype, rel in candidates if ref.folder in (None, ftype)]
        # custom nodes reuse input names (model_name...) for other folders: any folder will do
        hits = hits or [rel for _, rel in candidates]
        if hits:
            found.update(hits)
        else:
            missing.append(ref)
    return found, missing
