"""Workflow validation: every problem at once, each naming the node, the input and the fix."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from comfyui_standin.nodes import REAL_OBJECT_INFO
from handler.error_details import NodeProblem
from handler.validation import FileDirs, ModelFolders, details_from_comfy, validate_workflow

HERE = Path(__file__).parents[1]
OBJECT_INFO: dict[str, Any] = copy.deepcopy(REAL_OBJECT_INFO)
CAPTURED = HERE / "fixtures" / "comfyui-captured"
# The real dump lists the checkpoints of the server it came from; ours has these.
OBJECT_INFO["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] = [
    "sd15.safetensors",
    "sdxl/base.safetensors",
]
MODELS = ModelFolders(
    paths={
        "checkpoints": ["/runpod-volume/comfyui/models/checkpoints"],
        "loras": ["/runpod-volume/comfyui/models/loras"],
    },
    files={"checkpoints": ["sd15.safetensors", "sdxl/base.safetensors"], "loras": []},
)


def by_type(problems: list[NodeProblem]) -> dict[str, NodeProblem]:
    return {p.type: p for p in problems}


def test_a_valid_workflow_has_no_problems() -> None:
    workflow = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
    }
    assert validate_workflow(workflow, OBJECT_INFO, MODELS) == []


def test_all_problems_are_reported_together() -> None:
    workflow = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensor"}},
        "2": {"class_type": "EmptyImage", "inputs": {"width": 0, "height": "abc", "batch_size": 1}},
        "3": {"class_type": "NoSuchNode", "inputs": {}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["99", 0], "filename_prefix": "x"}},
        "5": {"class_type": "SaveImage", "inputs": {"images": ["2", 3], "filename_prefix": "x"}},
        "6": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
        "7": {"inputs": {}},
    }
    problems = validate_workflow(workflow, OBJECT_INFO, MODELS)
    found = by_type(problems)
    assert set(found) == {
        "value_not_in_list",
        "value_smaller_than_min",
        "invalid_input_type",
        "required_input_missing",
        "unknown_class",
        "link_to_missing_node",
        "bad_output_index",
        "return_type_mismatch",
        "missing_class_type",
    }
    model = found["value_not_in_list"]
    assert (model.node_id, model.class_type, model.input) == (
        "1",
        "CheckpointLoaderSimple",
        "ckpt_name",
    )
    assert model.folder == "checkpoints"
    assert model.searched == ("/runpod-volume/comfyui/models/checkpoints",)
    assert (model.closest or ("",))[0] == "sd15.safetensors"
    assert found["value_smaller_than_min"].input == "width"
    assert found["required_input_missing"].input == "color"
    assert "custom node" in found["unknown_class"].message
    assert found["return_type_mismatch"].node_id == "6"


def test_empty_model_folder_is_still_named() -> None:
    workflow = {
        "1": {
            "class_type": "LoraLoader",
            "inputs": {
                "model": ["2", 0],
                "clip": ["2", 1],
                "lora_name": "x.safetensors",
                "strength_model": 1.0,
                "strength_clip": 1.0,
            },
        },
        "2": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }
    info = json.loads(json.dumps(OBJECT_INFO))
    info["LoraLoader"]["input"]["required"]["lora_name"][0] = []
    [problem] = validate_workflow(workflow, info, MODELS)
    assert problem.folder == "loras"
    assert "sync it to the network volume" in problem.message


def test_upload_combos_check_the_file_not_the_list(tmp_path: Path) -> None:
    (tmp_path / "runpod-jobs" / "j").mkdir(parents=True)
    (tmp_path / "runpod-jobs" / "j" / "a.png").write_bytes(b"png")
    dirs = FileDirs(input=tmp_path)

    def load(name: str) -> dict[str, Any]:
        return {
            "1": {"class_type": "LoadImage", "inputs": {"image": name}},
            "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
        }

    assert validate_workflow(load("runpod-jobs/j/a.png"), OBJECT_INFO, MODELS, dirs) == []
    assert validate_workflow(load("runpod-jobs/j/a.png [input]"), OBJECT_INFO, MODELS, dirs) == []
    [missing] = validate_workflow(load("nope.png"), OBJECT_INFO, MODELS, dirs)
    assert missing.type == "input_file_missing" and "'images'" in missing.message
    [escape] = validate_workflow(load("../../etc/passwd"), OBJECT_INFO, MODELS, dirs)
    assert escape.type == "input_file_missing"


def test_no_output_node() -> None:
    workflow = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}
    }
    [problem] = validate_workflow(workflow, OBJECT_INFO, MODELS)
    assert problem.type == "prompt_no_outputs"


@pytest.mark.parametrize(
    ("name", "node_id", "kind", "input_name"),
    [
        ("prompt_400_value_not_in_list_ckpt_no_checkpoints.json", "1", "value_not_in_list", "ckpt_name"),
        ("prompt_400_value_smaller_than_min.json", "1", "value_smaller_than_min", "width"),
        ("prompt_400_return_type_mismatch.json", "2", "return_type_mismatch", "images"),
        ("prompt_400_invalid_prompt_unknown_class.json", "1", "invalid_prompt", None),
        (
            "prompt_400_custom_validation_failed_loadimage_missing_file.json",
            "1",
            "custom_validation_failed",
            "image",
        ),
    ],
)
def test_comfyui_refusals_map_into_the_same_details(
    name: str, node_id: str, kind: str, input_name: str | None
) -> None:
    captured = json.loads((CAPTURED / name).read_text())
    body = captured["response"]
    details = details_from_comfy(body, {"1": {"class_type": "X"}, "2": {"class_type": "SaveImage"}})
    assert details, body
    assert details[0].node_id == node_id
    assert details[0].type == kind
    assert details[0].input == input_name
