"""Every request body the REST v2 client can build is valid against RunPod's OpenAPI description.

The REST bodies are strict (``unevaluatedProperties: false``): a misspelled or misplaced field is a 422 on a
user's ``pulumi up``. The bodies come from ``infra.runpod_rest_shapes`` (the client sends nothing else), so
each case below builds one through it and validates it with openapi-core as a request to its operation:
creates with every optional field, and a PATCH of every provider field alone, including the clears.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from openapi_core.exceptions import OpenAPIError
from openapi_core.testing import MockRequest

from infra import runpod_rest_shapes as shapes
from tests.runpod_rest_emulator import load_openapi
from tests.runpod_rest_emulator.server import SPEC_HOST

IMAGE = "ghcr.io/me/comfy-runpod@sha256:" + "c" * 64


def validate(method: str, path: str, body: Any = None, query: dict[str, str] | None = None) -> None:
    request = MockRequest(
        SPEC_HOST,
        method,
        path,
        args=query or {},
        headers={"Authorization": "Bearer rpa_test"},
        data=json.dumps(body).encode() if body is not None else None,
    )
    load_openapi().validate_request(request)


FULL_ENDPOINT: dict[str, Any] = {
    "name": "comfy",
    "templateId": "tpl1",
    "gpuIds": "ADA_48_PRO,AMPERE_48,-NVIDIA L40",
    "gpuCount": 2,
    "allowedCudaVersions": "13.0,12.8",
    "workersMin": 1,
    "workersMax": 4,
    "idleTimeout": 30,
    "scalerType": "QUEUE_DELAY",
    "scalerValue": 4,
    "locations": "EU-RO-1,US-KS-2",
    "networkVolumeIds": [{"networkVolumeId": "vol1"}, {"networkVolumeId": "vol2"}],
    "executionTimeoutMs": 600000,
    "flashBootType": "PRIORITY_FLASHBOOT",
    "imageName": IMAGE,
    "env": [{"key": "LOG", "value": "info"}],
    "containerDiskInGb": 30,
    "dockerArgs": "python -u handler.py",
    "containerRegistryAuthId": "reg1",
}

ENDPOINT_CREATES: dict[str, dict[str, Any]] = {
    "every field": FULL_ENDPOINT,
    "from a template only": {"name": "comfy", "templateId": "tpl1", "gpuIds": "ADA_24"}
    | {"scalerType": "QUEUE_DELAY", "scalerValue": 4},
    "image, one volume, floor, request count": {
        "name": "comfy",
        "imageName": IMAGE,
        "gpuIds": ["ADA_24"],
        "minCudaVersion": "12.8",
        "networkVolumeId": "vol1",
        "scalerType": "REQUEST_COUNT",
        "scalerValue": 2,
        "workersMax": 2,
        "locations": [],
        "containerRegistryAuthId": None,
    },
}

# A PATCH of each provider field alone (scalerType/scalerValue are one object), and the clears.
ENDPOINT_PATCHES: dict[str, dict[str, Any]] = {
    **{key: {key: FULL_ENDPOINT[key]} for key in FULL_ENDPOINT if key not in ("scalerType", "scalerValue")},
    "scaler": {"scalerType": "REQUEST_COUNT", "scalerValue": 3},
    "networkVolumeId": {"networkVolumeId": "vol1"},
    "minCudaVersion": {"minCudaVersion": "12.8"},
    "clear minCudaVersion": {"minCudaVersion": None},
    "clear allowedCudaVersions": {"allowedCudaVersions": ""},
    "clear locations": {"locations": None},
    "clear volumes": {"networkVolumeId": None, "networkVolumeIds": None},
    "clear registry": {"containerRegistryAuthId": None},
    "gpu pools without exclusions": {"gpuIds": "ADA_24"},
    "empty env": {"env": {}},
}

FULL_TEMPLATE: dict[str, Any] = {
    "name": "comfy-tpl",
    "imageName": IMAGE,
    "containerDiskInGb": 20,
    "dockerArgs": "",
    "env": [{"key": "HF_TOKEN", "value": "x"}],
    "isServerless": True,
    "containerRegistryAuthId": "reg1",
    "volumeInGb": 0,
    "allowedCudaVersions": "13.0",
}

TEMPLATE_PATCHES: dict[str, dict[str, Any]] = {
    **{key: {key: value} for key, value in FULL_TEMPLATE.items()},
    "persistent mount": {"volumeInGb": 20, "volumeMountPath": "/workspace"},
    "clear registry": {"containerRegistryAuthId": None},
}


@pytest.mark.parametrize("case", sorted(ENDPOINT_CREATES))
def test_endpoint_create_bodies(case: str) -> None:
    validate("post", "/v2/serverless", shapes.endpoint_body(ENDPOINT_CREATES[case], create=True))


@pytest.mark.parametrize("case", sorted(ENDPOINT_PATCHES))
def test_endpoint_patch_bodies(case: str) -> None:
    validate("patch", "/v2/serverless/ep1", shapes.endpoint_body(ENDPOINT_PATCHES[case], create=False))


def test_every_endpoint_field_has_a_patch_case() -> None:
    covered = {key for fields in ENDPOINT_PATCHES.values() for key in fields}
    assert set(shapes.ENDPOINT_KEYS) - {"id"} <= covered


@pytest.mark.parametrize("create", [True, False], ids=["create", "patch"])
def test_template_full_bodies(create: bool) -> None:
    body = shapes.template_body(FULL_TEMPLATE, create=create)
    if create:
        validate("post", "/v2/templates", body)
    else:
        validate("patch", "/v2/templates/tpl1", body)


@pytest.mark.parametrize("case", sorted(TEMPLATE_PATCHES))
def test_template_patch_bodies(case: str) -> None:
    validate("patch", "/v2/templates/tpl1", shapes.template_body(TEMPLATE_PATCHES[case], create=False))


def test_every_template_field_has_a_patch_case() -> None:
    covered = {key for fields in TEMPLATE_PATCHES.values() for key in fields}
    assert set(shapes.TEMPLATE_KEYS) - {"id", "readme"} <= covered


@pytest.mark.parametrize("volume_type", [None, "STANDARD", "HIGH_PERFORMANCE"])
def test_volume_create_bodies(volume_type: str | None) -> None:
    body = shapes.volume_create_body(
        name="comfy-models", size=100, data_center_id="EU-RO-1", volume_type=volume_type
    )
    validate("post", "/v2/network-volumes", body)


@pytest.mark.parametrize(("name", "size"), [("renamed", None), (None, 200), ("renamed", 200)])
def test_volume_update_bodies(name: str | None, size: int | None) -> None:
    validate("patch", "/v2/network-volumes/vol1", shapes.volume_update_body(name=name, size=size))


def test_registry_create_body_and_catalog_query() -> None:
    validate("post", "/v2/registries", {"name": "ghcr-me", "username": "u", "password": "p"})
    validate("get", "/v2/catalog/gpus", query={"include": "AVAILABILITY", "product": "SERVERLESS"})


def test_the_validator_refuses_what_rest_refuses() -> None:
    """The check above can fail: a body the shapes module would never build is refused."""
    body = shapes.endpoint_body(ENDPOINT_CREATES["from a template only"], create=True)
    with pytest.raises(OpenAPIError, match="validation"):
        validate("post", "/v2/serverless", {**body, "gpuIds": "ADA_24"})
    with pytest.raises(OpenAPIError, match="validation"):
        validate("patch", "/v2/network-volumes/vol1", {"type": "STANDARD"})  # immutable after create


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "x", "gpuIDs": "ADA_24"}, "gpuIDs has no REST v2 field"),
        ({"gpuIds": "-NVIDIA L40"}, "at least one GPU pool"),
        ({"scalerType": "QUEUE_DELAY"}, "give both"),
        ({"scalerType": "FAST", "scalerValue": 1}, "not one of QUEUE_DELAY, REQUEST_COUNT"),
        ({"imageName": None}, "imageName cannot be cleared"),
    ],
)
def test_fields_rest_cannot_take_are_refused_before_sending(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        shapes.endpoint_body(fields, create=False)


def test_create_needs_what_rest_requires() -> None:
    with pytest.raises(ValueError, match=r"gpuIds, scalerType, imageName \(or templateId\)"):
        shapes.endpoint_body({"name": "comfy"}, create=True)
    with pytest.raises(ValueError, match="imageName is required"):
        shapes.template_body({"name": "comfy-tpl"}, create=True)
