"""Workflow validation against ComfyUI's ``/object_info``, before anything is queued.

Pure functions over the workflow dict. Every problem is reported at once, each as a detail
``{node_id, class_type, input, type, message, value, ...}``; model combos also name the
folder that was searched and the closest available names. ComfyUI's own ``/prompt``
refusals are mapped into the same shape by ``details_from_comfy``.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from handler.error_details import NodeProblem

# Options that mark a combo whose value is a file in the input dir, not a fixed list. ComfyUI
# skips the list check for these (LoadImage's VALIDATE_INPUTS) and only checks existence.
_UPLOAD_FLAGS = ("image_upload", "video_upload", "audio_upload", "upload", "3d_upload")
_ANNOTATION = re.compile(r"^(.*?) \[(input|output|temp)\]$")

# When a combo's options match no folder's listing (e.g. the folder is empty), the input's
# name tells which model folder it reads from.
_FOLDER_BY_INPUT = {
    "ckpt_name": "checkpoints",
    "lora_name": "loras",
    "vae_name": "vae",
    "unet_name": "diffusion_models",
    "clip_name": "text_encoders",
    "clip_name1": "text_encoders",
    "clip_name2": "text_encoders",
    "clip_name3": "text_encoders",
    "control_net_name": "controlnet",
    "model_name": "upscale_models",
    "style_model_name": "style_models",
    "gligen_name": "gligen",
    "hypernetwork_name": "hypernetworks",
    "config_name": "configs",
    "audio_encoder_name": "audio_encoders",
    "name": "model_patches",
}


@dataclass
class ModelFolders:
    """What the worker knows about model folders: search paths and the files in them."""

    paths: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, list[str]] = field(default_factory=dict)

    def folder_for(self, input_name: str, options: list[str]) -> str | None:
        """The model folder a combo lists, by its options, else by the input's name."""
        if options:
            wanted = set(options)
            best: tuple[int, str] | None = None
            for folder, names in self.files.items():
                have = set(names)
                if wanted <= have and (best is None or len(have) < best[0]):
                    best = (len(have), folder)
            if best:
                return best[1]
        by_name = _FOLDER_BY_INPUT.get(input_name)
        if by_name is not None and (by_name in self.paths or not options):
            return by_name
        return None


@dataclass(frozen=True)
class FileDirs:
    """ComfyUI's input/output/temp dirs, when this process can see them."""

    input: Path | None = None
    output: Path | None = None
    temp: Path | None = None


def _detail(
    node_id: str,
    class_type: str | None,
    input_name: str | None,
    kind: str,
    message: str,
    *,
    value: Any = None,
    closest: Sequence[str] | None = None,
    allowed: Sequence[Any] | None = None,
    folder: str | None = None,
    searched: Sequence[str] | None = None,
    min: float | None = None,
    max: float | None = None,
) -> NodeProblem:
    return NodeProblem(
        node_id,
        class_type,
        input_name,
        kind,
        message,
        value=value,
        closest=None if closest is None else tuple(closest),
        allowed=None if allowed is None else tuple(allowed),
        folder=folder,
        searched=None if searched is None else tuple(searched),
        min=min,
        max=max,
    )


def _combo_options(spec: Any) -> list[Any] | None:
    """The options of a combo input spec (old list form or new ``COMBO`` form), else None."""
    if isinstance(spec, list) and spec:
        kind = spec[0]
        if isinstance(kind, list):
            return kind
        if kind == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
            options = spec[1].get("options")
            return options if isinstance(options, list) else []
    return None


def _spec_options(spec: Any) -> dict[str, Any]:
    if isinstance(spec, list) and len(spec) > 1 and isinstance(spec[1], dict):
        return spec[1]
    return {}


def _is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str | int)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


def _types_compatible(produced: str, accepted: str) -> bool:
    if "*" in (produced, accepted):
        return True
    produced_set = {t.strip() for t in produced.split(",")}
    accepted_set = {t.strip() for t in accepted.split(",")}
    return bool(produced_set & accepted_set)


def _closest(value: str, options: Iterable[str], n: int = 3) -> list[str]:
    options = [str(o) for o in options]
    close = difflib.get_close_matches(value, options, n=n, cutoff=0.4)
    if not close:
        base = value.rsplit("/", 1)[-1].lower()
        close = [o for o in options if base and base.split(".")[0] in o.lower()][:n]
    return close


def _file_exists(value: str, dirs: FileDirs) -> bool | None:
    """Whether an upload-combo value names an existing file; None when we cannot tell."""
    match = _ANNOTATION.match(value)
    name, kind = (match.group(1), match.group(2)) if match else (value, "input")
    base = {"input": dirs.input, "output": dirs.output, "temp": dirs.temp}[kind]
    if base is None:
        return None
    if name.startswith("/") or ".." in name.split("/"):
        return False
    try:
        return (base / name).is_file()
    except (OSError, ValueError):  # a name too long for the filesystem, NUL, ...
        return False


def validate_workflow(
    workflow: Mapping[str, Any],
    object_info: Mapping[str, Any],
    models: ModelFolders | None = None,
    dirs: FileDirs | None = None,
) -> list[NodeProblem]:
    """Every problem of ``workflow`` that can be found without running it (empty: valid)."""
    models = models or ModelFolders()
    dirs = dirs or FileDirs()
    problems: list[NodeProblem] = []
    has_output = False

    for node_id, node in workflow.items():
        class_type = node.get("class_type") if isinstance(node, dict) else None
        if not isinstance(class_type, str) or not class_type:
            problems.append(
                _detail(
                    node_id,
                    None,
                    None,
                    "missing_class_type",
                    "node has no 'class_type'; is this an API-format workflow?",
                )
            )
            continue
        info = object_info.get(class_type)
        if not isinstance(info, dict) or not info:
            problems.append(
                _detail(
                    node_id,
                    class_type,
                    None,
                    "unknown_class",
                    f"node type {class_type!r} is not installed on this worker: add the custom "
                    "node that provides it to image/ (the lock) and redeploy",
                    closest=_closest(class_type, object_info.keys()) or None,
                )
            )
            continue
        if info.get("output_node"):
            has_output = True
        inputs = node.get("inputs")
        if not isinstance(inputs, dict):
            # Real ComfyUI's prompt worker dies on a node without "inputs": refuse it here.
            problems.append(
                _detail(
                    node_id, class_type, None, "bad_inputs", "node needs an 'inputs' object (use {} for none)"
                )
            )
            continue
        spec_all = info.get("input") or {}
        required = spec_all.get("required") or {}
        optional = spec_all.get("optional") or {}
        for name in required:
            if name not in inputs:
                problems.append(
                    _detail(
                        node_id,
                        class_type,
                        name,
                        "required_input_missing",
                        f"required input {name!r} is missing",
                    )
                )
        prefix_problem = _check_prefix(inputs.get("filename_prefix"))
        if prefix_problem:
            problems.append(
                _detail(
                    node_id,
                    class_type,
                    "filename_prefix",
                    "bad_filename_prefix",
                    prefix_problem,
                    value=inputs.get("filename_prefix"),
                )
            )
        for name, value in inputs.items():
            spec = required.get(name, optional.get(name))
            if spec is None:
                # ComfyUI does not validate undeclared inputs but still follows their links;
                # a link to a missing node there kills its prompt worker (the queue hangs).
                if _is_link(value) and str(value[0]) not in workflow:
                    problems.append(
                        _detail(
                            node_id,
                            class_type,
                            name,
                            "link_to_missing_node",
                            f"links to node {value[0]!r}, which is not in the workflow",
                            value=value,
                        )
                    )
                continue
            problems.extend(
                _check_input(node_id, class_type, name, value, spec, workflow, object_info, models, dirs)
            )
    if not has_output and not problems:
        problems.append(
            _detail(
                "",
                None,
                None,
                "prompt_no_outputs",
                "the workflow has no output node (SaveImage, PreviewImage, ...); add one",
            )
        )
    return problems


def _check_prefix(prefix: Any) -> str | None:
    """Why a literal ``filename_prefix`` would save outside the output folder, or None.

    ComfyUI refuses these at run time ("Saving image outside the output folder is not
    allowed"); refusing them here says so before any GPU time is spent.
    """
    if prefix is None or isinstance(prefix, list):
        return None
    text = str(prefix)
    if not text.strip():
        return "filename_prefix is empty; use a name like 'ComfyUI' or 'portraits/ComfyUI'"
    if "\x00" in text or text.startswith("/") or ".." in text.replace("\\", "/").split("/"):
        return "filename_prefix must stay inside the output folder: no '..' segments, absolute paths or NUL"
    return None


def _check_input(
    node_id: str,
    class_type: str,
    name: str,
    value: Any,
    spec: Any,
    workflow: Mapping[str, Any],
    object_info: Mapping[str, Any],
    models: ModelFolders,
    dirs: FileDirs,
) -> list[NodeProblem]:
    accepted = spec[0] if isinstance(spec, list) and spec else spec
    if isinstance(value, list):
        if not _is_link(value):
            return [
                _detail(
                    node_id,
                    class_type,
                    name,
                    "bad_linked_input",
                    "a link must be [source_node_id, output_index]",
                    value=value,
                )
            ]
        source_id, index = str(value[0]), value[1]
        source = workflow.get(source_id)
        if not isinstance(source, dict):
            return [
                _detail(
                    node_id,
                    class_type,
                    name,
                    "link_to_missing_node",
                    f"links to node {source_id!r}, which is not in the workflow",
                    value=value,
                )
            ]
        source_info = object_info.get(str(source.get("class_type")))
        if not isinstance(source_info, dict) or not source_info:
            return []  # reported on the source node
        outputs = source_info.get("output") or []
        if not 0 <= index < len(outputs):
            return [
                _detail(
                    node_id,
                    class_type,
                    name,
                    "bad_output_index",
                    f"links to output {index} of node {source_id!r} "
                    f"({source.get('class_type')}), which has {len(outputs)} output(s)",
                    value=value,
                )
            ]
        produced = outputs[index]
        if (
            isinstance(accepted, str)
            and isinstance(produced, str)
            and not _types_compatible(produced, accepted)
        ):
            return [
                _detail(
                    node_id,
                    class_type,
                    name,
                    "return_type_mismatch",
                    f"expects {accepted} but node {source_id!r} output {index} is {produced}",
                    value=value,
                )
            ]
        return []

    options = _combo_options(spec)
    spec_opts = _spec_options(spec)
    if options is not None:
        if any(spec_opts.get(flag) for flag in _UPLOAD_FLAGS):
            if not isinstance(value, str):
                return [
                    _detail(
                        node_id, class_type, name, "invalid_input_type", "must be a file name", value=value
                    )
                ]
            exists = _file_exists(value, dirs)
            if exists is False:
                return [
                    _detail(
                        node_id,
                        class_type,
                        name,
                        "input_file_missing",
                        f"input file {value!r} does not exist; send it in 'images' with this name",
                        value=value,
                        closest=_closest(value, [str(o) for o in options]) or None,
                    )
                ]
            return []
        if value in options:
            return []
        folder = models.folder_for(name, [str(o) for o in options])
        if folder:
            message = (
                f"model {value!r} is not in {folder} (searched: "
                f"{', '.join(models.paths.get(folder, [])) or 'no path known'}); "
                "sync it to the network volume or pick an available one"
            )
        else:
            message = f"{value!r} is not one of the {len(options)} allowed values"
        return [
            _detail(
                node_id,
                class_type,
                name,
                "value_not_in_list",
                message,
                value=value,
                folder=folder,
                searched=models.paths.get(folder) if folder else None,
                closest=_closest(str(value), [str(o) for o in options]),
                allowed=options if len(options) <= 20 else None,
            )
        ]

    if accepted in ("INT", "FLOAT"):
        try:
            if isinstance(value, bool):
                raise ValueError("a boolean")
            number: float = int(value) if accepted == "INT" else float(value)
            if isinstance(number, float) and math.isnan(number):
                raise ValueError("NaN")
        except (TypeError, ValueError, OverflowError) as exc:
            return [
                _detail(
                    node_id,
                    class_type,
                    name,
                    "invalid_input_type",
                    f"must be {accepted}, got {value!r} ({exc})",
                    value=value,
                )
            ]
        low, high = spec_opts.get("min"), spec_opts.get("max")
        if isinstance(low, int | float) and number < low:
            return [
                _detail(
                    node_id,
                    class_type,
                    name,
                    "value_smaller_than_min",
                    f"{value} is smaller than the minimum {low}",
                    value=value,
                    min=low,
                )
            ]
        if isinstance(high, int | float) and number > high:
            return [
                _detail(
                    node_id,
                    class_type,
                    name,
                    "value_bigger_than_max",
                    f"{value} is bigger than the maximum {high}",
                    value=value,
                    max=high,
                )
            ]
    return []


def details_from_comfy(body: Mapping[str, Any], workflow: Mapping[str, Any]) -> list[NodeProblem]:
    """ComfyUI's ``/prompt`` error body (400, or 200 with node_errors) as validation details."""
    details: list[NodeProblem] = []
    node_errors = body.get("node_errors") or {}
    for node_id, entry in node_errors.items():
        class_type = entry.get("class_type")
        for err in entry.get("errors") or []:
            extra = err.get("extra_info") or {}
            message = _with_details(str(err.get("message", "")), err.get("details"))
            details.append(
                _detail(
                    str(node_id),
                    class_type,
                    extra.get("input_name"),
                    str(err.get("type", "error")),
                    message,
                    value=extra.get("received_value"),
                )
            )
    if not details and isinstance(body.get("error"), dict):
        err = body["error"]
        node_match = re.search(r"#(\S+?)'", str(err.get("details", "")))
        node_id = node_match.group(1) if node_match else ""
        node = workflow.get(node_id) if node_id else None
        details.append(
            _detail(
                node_id,
                node.get("class_type") if isinstance(node, dict) else None,
                None,
                str(err.get("type", "error")),
                _with_details(str(err.get("message", "")), err.get("details")),
            )
        )
    return details


def _with_details(message: str, details: Any) -> str:
    if not details or str(details) == message:
        return message
    return f"{message} ({details})"
