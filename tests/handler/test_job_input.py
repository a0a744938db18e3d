"""The job input schema: what callers may send, and the errors they get otherwise."""

from __future__ import annotations

import base64
import json

import pytest

from handler.errors import InvalidInput, error_payload
from handler.job_input import check_file_name, decode_base64, parse_job_input

WORKFLOW = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
}
PNG_B64 = base64.b64encode(b"\x89PNG fake").decode()


def parse(raw: object, **kw: object) -> object:
    return parse_job_input(raw, max_timeout_s=3600, max_input_bytes=1024, **kw)  # type: ignore[arg-type]


def problems(raw: object) -> list[dict[str, str]]:
    """The ``details`` of the payload a caller gets back."""
    with pytest.raises(InvalidInput) as info:
        parse(raw)
    details: list[dict[str, str]] = error_payload(info.value)["details"]
    return details


def test_minimal_input_with_workflow_as_dict_or_json_string() -> None:
    assert parse({"workflow": WORKFLOW}).workflow == WORKFLOW  # type: ignore[attr-defined]
    assert parse({"workflow": json.dumps(WORKFLOW)}).workflow == WORKFLOW  # type: ignore[attr-defined]


def test_ui_format_is_refused_with_the_export_hint() -> None:
    [p] = problems({"workflow": {"nodes": [], "links": [], "version": 0.4}})
    assert p["field"] == "workflow"
    assert "Export (API)" in p["message"]


def test_unknown_keys_are_named_with_the_accepted_ones() -> None:
    [p] = problems({"workflow": WORKFLOW, "prompt": {}})
    assert "'prompt'" in p["message"]
    assert "workflow" in p["fix"] and "images" in p["fix"] and "timeout_s" in p["fix"]


def test_every_problem_is_reported_at_once() -> None:
    found = problems(
        {
            "images": [{"name": "../x.png", "image": PNG_B64}, {"name": "ok.png", "image": "!!"}],
            "timeout_s": -1,
            "output": {"mode": "ftp"},
            "include_temp": "yes",
        }
    )
    fields = {p["field"] for p in found}
    assert fields == {
        "workflow",
        "images[0].name",
        "images[1].image",
        "timeout_s",
        "output.mode",
        "include_temp",
    }


@pytest.mark.parametrize(
    "name",
    [
        "../a.png",
        "a/../../b.png",
        "/etc/passwd",
        "a\\b.png",
        "a\x00.png",
        "C:/x.png",
        "a//b.png",
        "./a.png",
        "",
        " a.png",
    ],
)
def test_unsafe_file_names_are_refused(name: str) -> None:
    assert check_file_name(name) is not None


@pytest.mark.parametrize("name", ["a.png", "masks/a.png", "deep/er/name with space.webp"])
def test_safe_file_names_are_accepted(name: str) -> None:
    assert check_file_name(name) is None


def test_images_alias_files_and_data_uris() -> None:
    spec = parse(
        {"workflow": WORKFLOW, "files": [{"name": "m/a.png", "image": "data:image/png;base64," + PNG_B64}]}
    )
    assert spec.files[0].name == "m/a.png"  # type: ignore[attr-defined]
    assert spec.files[0].data == b"\x89PNG fake"  # type: ignore[attr-defined]


def test_url_inputs_must_be_http() -> None:
    [p] = problems({"workflow": WORKFLOW, "images": [{"name": "a.png", "url": "file:///etc/passwd"}]})
    assert p["field"] == "images[0].url"


def test_input_size_cap() -> None:
    big = base64.b64encode(b"x" * 2000).decode()
    [p] = problems({"workflow": WORKFLOW, "images": [{"name": "a.png", "image": big}]})
    assert "MAX_INPUT_BYTES" in p["message"] and "url" in p["fix"]


def test_runpod_s3config_becomes_the_bucket_override() -> None:
    spec = parse(
        {"workflow": WORKFLOW},
        s3_config={"accessId": "AK", "accessSecret": "SK", "bucketName": "b", "endpointUrl": "http://s3"},
    )
    assert spec.s3 is not None and spec.s3.bucket == "b"  # type: ignore[attr-defined]


def test_decode_base64_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="base64"):
        decode_base64("not base64!")
