"""The job input schema: parsed and checked in one pass that reports every problem.

A job's ``input`` (see README, "Job input")::

    {
      "workflow": {...} | "<json>",          # API format ("Export (API)" in ComfyUI)
      "images": [{"name": "masks/a.png", "image": "<base64 or data URI>"},
                 {"name": "b.png", "url": "https://..."}],   # alias: "files"
      "timeout_s": 300,                       # optional, <= the worker's maximum
      "output": {"mode": "base64" | "s3" | "auto", "s3": {...}},   # optional
      "include_temp": false                   # optional: also return preview (temp) files
    }
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any

from handler.error_details import FieldProblem
from handler.errors import InvalidInput
from handler.settings import S3Target

ACCEPTED_KEYS = ("workflow", "images", "files", "timeout_s", "output", "include_temp")
OUTPUT_MODES = ("base64", "s3", "auto")
S3_KEYS = ("endpoint_url", "access_key_id", "secret_access_key", "bucket", "region", "prefix")
MAX_TIMEOUT_S = 7 * 24 * 3600  # RunPod's longest executionTimeout
MAX_NAME_LENGTH = 1024
_DATA_URI = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?(;[\w-]+=[\w.-]+)*;base64,", re.ASCII)
_EXPORT_HINT = (
    "this is the UI format (it has 'nodes' and 'links'); in ComfyUI use "
    "Workflow > Export (API) and send that file"
)


@dataclass(frozen=True)
class InputFile:
    """One input file: ``name`` is a safe relative path; exactly one of data/url is set."""

    name: str
    data: bytes | None = field(default=None, repr=False)
    url: str | None = None


@dataclass(frozen=True)
class JobInput:
    workflow: dict[str, Any]
    files: list[InputFile]
    timeout_s: float | None
    output_mode: str | None
    s3: S3Target | None
    include_temp: bool


def check_file_name(name: Any) -> str | None:
    """Why ``name`` is not a safe relative file name, or None if it is.

    Refused: empty, absolute, ``..`` or ``.`` segments, backslashes, NUL and other control
    characters, empty segments (``a//b``), and over-long names.
    """
    if not isinstance(name, str) or not name:
        return "must be a non-empty string like 'photo.png' or 'masks/a.png'"
    if len(name) > MAX_NAME_LENGTH:
        return f"is longer than {MAX_NAME_LENGTH} characters"
    if "\\" in name:
        return "contains a backslash; use '/' between folders"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "contains a control character (NUL, newline, ...)"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "is an absolute path; use a path relative to the job's input folder"
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "has an empty, '.' or '..' segment; use plain folder names like 'masks/a.png'"
    if any(len(p.encode()) > 255 for p in parts):
        return "has a folder or file name longer than 255 bytes"
    if any(p != p.strip() for p in parts):
        return "has a folder or file name with leading or trailing spaces"
    return None


def decode_base64(value: str) -> bytes:
    """Decode plain base64 or a ``data:<mime>;base64,`` URI; raises ValueError."""
    match = _DATA_URI.match(value)
    payload = value[match.end() :] if match else value
    payload = "".join(payload.split())  # tolerate line-wrapped base64
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"is not valid base64 ({exc})") from None


def parse_job_input(
    raw: Any,
    *,
    max_timeout_s: float,
    max_input_bytes: int,
    s3_config: Any = None,
) -> JobInput:
    """Check a job's ``input``; raise InvalidInput listing every problem found."""
    problems: list[FieldProblem] = []

    def problem(fld: str, message: str, fix: str | None = None) -> None:
        problems.append(FieldProblem(fld, message, fix or None))

    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise InvalidInput(
                "the job input is a string that is not JSON",
                [FieldProblem("input", "must be an object with a 'workflow' key")],
            ) from None
    if not isinstance(raw, dict):
        raise InvalidInput(
            "the job input must be an object",
            [FieldProblem("input", f"got {type(raw).__name__}", 'send {"input": {"workflow": {...}}}')],
        )

    unknown = sorted(str(k) for k in raw if k not in ACCEPTED_KEYS)
    if unknown:
        problem(
            "input",
            f"unknown key(s) {', '.join(map(repr, unknown))}",
            f"accepted keys are: {', '.join(ACCEPTED_KEYS)}",
        )

    workflow = _parse_workflow(raw.get("workflow"), problem)
    if "images" in raw and "files" in raw:
        problem("files", "both 'images' and 'files' are given", "use one of them ('files' is an alias)")
    files_key = "files" if "files" in raw else "images"
    files = _parse_files(raw.get(files_key), files_key, max_input_bytes, problem)

    timeout_s: float | None = None
    if raw.get("timeout_s") is not None:
        value = raw["timeout_s"]
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            problem("timeout_s", f"must be a number of seconds, got {value!r}")
        elif not 0 < value <= max_timeout_s:
            problem("timeout_s", f"must be > 0 and <= {max_timeout_s:g} (got {value})")
        else:
            timeout_s = float(value)

    include_temp = raw.get("include_temp", False)
    if not isinstance(include_temp, bool):
        problem("include_temp", f"must be true or false, got {include_temp!r}")
        include_temp = False

    output_mode, s3 = _parse_output(raw.get("output"), problem)
    if s3 is None and s3_config is not None:
        s3 = _parse_runpod_s3_config(s3_config, problem)

    if problems:
        raise InvalidInput(
            f"the job input has {len(problems)} problem(s): "
            + "; ".join(f"{p.field}: {p.message}" for p in problems[:3]),
            problems,
        )
    assert workflow is not None
    return JobInput(workflow, files, timeout_s, output_mode, s3, include_temp)


def _parse_workflow(value: Any, problem: Any) -> dict[str, Any] | None:
    if value is None:
        problem("workflow", "is missing", "add the API-format workflow (Workflow > Export (API))")
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            problem("workflow", f"is a string but not valid JSON ({exc})")
            return None
    if not isinstance(value, dict):
        problem("workflow", f"must be an object of nodes, got {type(value).__name__}")
        return None
    if "nodes" in value and "links" in value:
        problem("workflow", _EXPORT_HINT)
        return None
    if not value:
        problem("workflow", "has no nodes")
        return None
    bad = [str(k) for k, v in value.items() if not isinstance(v, dict)]
    if bad:
        problem(
            "workflow",
            f"node(s) {', '.join(bad[:10])} are not objects",
            'each node is {"class_type": "...", "inputs": {...}}',
        )
        return None
    return {str(k): v for k, v in value.items()}


def _parse_files(value: Any, key: str, max_bytes: int, problem: Any) -> list[InputFile]:
    if value is None:
        return []
    if not isinstance(value, list):
        problem(key, f"must be a list of {{name, image}} or {{name, url}}, got {type(value).__name__}")
        return []
    files: list[InputFile] = []
    seen: set[str] = set()
    total = 0
    for i, item in enumerate(value):
        where = f"{key}[{i}]"
        if not isinstance(item, dict):
            problem(where, 'must be an object like {"name": "a.png", "image": "<base64>"}')
            continue
        extra = sorted(str(k) for k in item if k not in ("name", "image", "url"))
        if extra:
            problem(where, f"unknown key(s) {', '.join(map(repr, extra))}", "use name + image or name + url")
        name = item.get("name")
        why = check_file_name(name)
        if why:
            problem(f"{where}.name", f"{name!r} {why}")
            continue
        assert isinstance(name, str)
        if name in seen:
            problem(f"{where}.name", f"{name!r} is given twice")
            continue
        seen.add(name)
        has_image, has_url = "image" in item, "url" in item
        if has_image == has_url:
            problem(where, "needs exactly one of 'image' (base64 or data URI) or 'url'")
            continue
        if has_url:
            url = item["url"]
            if not isinstance(url, str) or not re.match(r"^https?://", url, re.IGNORECASE):
                problem(f"{where}.url", f"{str(url)[:100]!r} is not an http(s) URL")
                continue
            files.append(InputFile(name, url=url))
            continue
        data = item["image"]
        if not isinstance(data, str):
            problem(f"{where}.image", "must be a base64 string or a data: URI")
            continue
        try:
            decoded = decode_base64(data)
        except ValueError as exc:
            problem(f"{where}.image", str(exc))
            continue
        if not decoded:
            problem(f"{where}.image", "is empty")
            continue
        total += len(decoded)
        if total > max_bytes:
            problem(where, f"input files exceed MAX_INPUT_BYTES={max_bytes}", "send large files by 'url'")
            continue
        files.append(InputFile(name, data=decoded))
    return files


def _parse_output(value: Any, problem: Any) -> tuple[str | None, S3Target | None]:
    if value is None:
        return None, None
    if not isinstance(value, dict):
        problem("output", f'must be an object like {{"mode": "auto"}}, got {type(value).__name__}')
        return None, None
    extra = sorted(str(k) for k in value if k not in ("mode", "s3"))
    if extra:
        problem("output", f"unknown key(s) {', '.join(map(repr, extra))}", "accepted: mode, s3")
    mode = value.get("mode")
    if mode is not None and mode not in OUTPUT_MODES:
        problem("output.mode", f"{mode!r} is not one of {', '.join(OUTPUT_MODES)}")
        mode = None
    s3 = None
    if value.get("s3") is not None:
        raw = value["s3"]
        if not isinstance(raw, dict):
            problem("output.s3", "must be an object")
        else:
            unknown = sorted(str(k) for k in raw if k not in S3_KEYS)
            if unknown:
                problem(
                    "output.s3",
                    f"unknown key(s) {', '.join(map(repr, unknown))}",
                    f"accepted: {', '.join(S3_KEYS)}",
                )
            missing = [k for k in S3_KEYS[:4] if not isinstance(raw.get(k), str) or not raw.get(k)]
            if missing:
                problem("output.s3", f"missing {', '.join(missing)}")
            elif not unknown:
                s3 = S3Target(
                    endpoint_url=raw["endpoint_url"],
                    access_key_id=raw["access_key_id"],
                    secret_access_key=raw["secret_access_key"],
                    bucket=raw["bucket"],
                    region=raw.get("region") if isinstance(raw.get("region"), str) else None,
                    prefix=str(raw.get("prefix") or "comfy-runpod").strip("/"),
                )
    return mode, s3


def _parse_runpod_s3_config(raw: Any, problem: Any) -> S3Target | None:
    """RunPod's job-level ``s3Config`` ({accessId, accessSecret, bucketName, endpointUrl})."""
    if not isinstance(raw, dict):
        problem("s3Config", "must be an object")
        return None
    keys = ("accessId", "accessSecret", "bucketName", "endpointUrl")
    missing = [k for k in keys if not isinstance(raw.get(k), str) or not raw.get(k)]
    if missing:
        problem("s3Config", f"missing {', '.join(missing)}")
        return None
    return S3Target(
        endpoint_url=raw["endpointUrl"],
        access_key_id=raw["accessId"],
        secret_access_key=raw["accessSecret"],
        bucket=raw["bucketName"],
        prefix=str(raw.get("objectPath") or "comfy-runpod").strip("/"),
    )
