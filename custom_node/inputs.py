"""Local input files as the endpoint's ``images`` job input: those a prompt refers to
(``collect_images``, the custom node) and those named on the command line (``input_files``).

The worker has its own, empty input folder, so every file a loader node names must travel
with the job. Names keep their subfolders (``masks/a.png``): the worker puts each file at
that path in the job's folder and rewrites the references that match the name, the same
rules this module follows to find them:

* a node with a string ``subfolder`` input (LoadImageWithSubfolder): ``subfolder/<value>``;
* any other string input, with an optional `` [input]`` annotation (LoadImage's ``image``).

Only names of existing files inside the input folder count, so ordinary text inputs and
files the worker may have on its volume pass untouched.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import WorkflowFileError

_ANNOTATION = re.compile(r"^(.*?)( \[input\])$")
#: RunPod refuses /run bodies over 10 MB; base64 adds a third.
MAX_TOTAL_BYTES = 7 * 1024 * 1024


class InputTooLarge(ValueError):
    """The referenced files do not fit in one job request."""


#: Longer strings are prompt text, not file names (and would make stat() fail).
MAX_NAME_LENGTH = 1024


def _safe_name(name: str) -> bool:
    if (
        not name
        or len(name) > MAX_NAME_LENGTH
        or "\\" in name
        or name.startswith("/")
        or re.match(r"^[A-Za-z]:", name)
    ):
        return False
    if any(ord(c) < 32 for c in name):
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


def _existing(input_dir: Path, name: str) -> bool:
    if not _safe_name(name):
        return False
    try:
        path = (input_dir / name).resolve()
        return path.is_relative_to(input_dir) and path.is_file()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte, ...
        return False


def referenced_inputs(prompt: Mapping[str, Any], input_dir: Path) -> list[str]:
    """The names (relative to ``input_dir``, ``/``-separated) of the files the prompt uses."""
    input_dir = input_dir.resolve()
    names: list[str] = []
    for node in prompt.values():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if not isinstance(inputs, dict):
            continue
        subfolder = inputs.get("subfolder")
        found_with_subfolder = False
        if isinstance(subfolder, str) and subfolder.strip("/"):
            for key, value in inputs.items():
                if key != "subfolder" and isinstance(value, str):
                    name = f"{subfolder.strip('/')}/{value}"
                    if _existing(input_dir, name):
                        names.append(name)
                        found_with_subfolder = True
                        break
        if found_with_subfolder:
            continue
        for value in inputs.values():
            if not isinstance(value, str):
                continue
            match = _ANNOTATION.match(value)
            name = match.group(1) if match else value
            if _existing(input_dir, name):
                names.append(name)
    return list(dict.fromkeys(names))


def collect_images(
    prompt: Mapping[str, Any], input_dir: Path, max_bytes: int = MAX_TOTAL_BYTES
) -> list[dict[str, str]]:
    """``[{"name", "image": base64}]`` for every referenced input file; raises InputTooLarge."""
    entries = []
    total = 0
    for name in referenced_inputs(prompt, input_dir):
        data = (input_dir / name).read_bytes()
        total += len(data)
        if total > max_bytes:
            raise InputTooLarge(
                f"the workflow's input files exceed {max_bytes // (1024 * 1024)} MiB (at {name}); "
                "RunPod refuses larger requests, use smaller images or URL inputs"
            )
        entries.append(_entry(name, data))
    return entries


def input_files(specs: list[str], base: Path | None = None) -> list[dict[str, str]]:
    """``images`` entries for the job input from ``name=path`` or ``path`` specs.

    Without ``name=``, the name is the path relative to ``base`` (default: the current
    directory) when it lies inside it, else the file name; subfolders are kept.
    """
    base = (base or Path.cwd()).resolve()
    entries = []
    for spec in specs:
        name, sep, raw = spec.partition("=")
        path = Path(raw if sep else spec).expanduser()
        if not path.is_absolute():
            path = base / path
        if not sep:
            resolved = path.resolve()
            name = resolved.relative_to(base).as_posix() if resolved.is_relative_to(base) else path.name
        if not path.is_file():
            raise WorkflowFileError(f"input file {path} does not exist")
        entries.append(_entry(name, path.read_bytes()))
    return entries


def _entry(name: str, data: bytes) -> dict[str, str]:
    return {"name": name, "image": base64.b64encode(data).decode("ascii")}
