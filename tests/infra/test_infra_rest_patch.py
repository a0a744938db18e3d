"""``endpoint_patch``: the partial REST update from the previous desired endpoint to the new one.

Each case is applied to an endpoint in the spec-checked emulator; reading it back must show no remaining
difference (what a ``refresh`` then ``preview`` would see), and the PATCH must carry only what changed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from infra.runpod_rest import RunPodREST
from infra.runpod_rest_shapes import endpoint_patch
from tests.helpers import endpoint_fields
from tests.runpod_rest_emulator import RunPodRESTEmulator, running_emulator

IMAGE = "ghcr.io/me/comfy-runpod@sha256:" + "1" * 64
BASE: dict[str, Any] = endpoint_fields(imageName=IMAGE, env={"LOG": "info"})


def without(*keys: str, **changes: Any) -> dict[str, Any]:
    return {**{k: v for k, v in BASE.items() if k not in keys}, **changes}


CASES: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {
    # name: (old, new, expected patch)
    "no change, lists reordered and recased": (
        BASE,
        {
            **BASE,
            "gpuIds": "AMPERE_48,ADA_24",
            "locations": "eu-ro-1",
            "env": [{"key": "LOG", "value": "info"}],
        },
        {},
    ),
    "one scaling bound": (BASE, {**BASE, "workersMax": 5}, {"workersMax": 5}),
    "scaler value travels with its type": (
        BASE,
        {**BASE, "scalerValue": 6},
        {"scalerType": "QUEUE_DELAY", "scalerValue": 6},
    ),
    "request count scaling drops idleTimeout": (
        BASE,
        {**BASE, "scalerType": "REQUEST_COUNT", "scalerValue": 2},
        {"scalerType": "REQUEST_COUNT", "scalerValue": 2},
    ),
    "image and env roll the workers": (
        BASE,
        {**BASE, "imageName": IMAGE.replace("1", "2"), "env": {"LOG": "debug", "HF_HOME": "/runpod-volume"}},
        {"imageName": IMAGE.replace("1", "2"), "env": {"LOG": "debug", "HF_HOME": "/runpod-volume"}},
    ),
    "removed keys go back to RunPod's defaults or clear": (
        BASE,
        without("executionTimeoutMs", "flashBootType", "locations", "env"),
        {"executionTimeoutMs": 300000, "flashBootType": "OFF", "locations": [], "env": {}},
    ),
    "a CUDA set swapped for a floor": (
        BASE,
        without("allowedCudaVersions", minCudaVersion="12.8"),
        {"allowedCudaVersions": "", "minCudaVersion": "12.8"},
    ),
    "pools and an exclusion": (
        BASE,
        {**BASE, "gpuIds": "ADA_48_PRO,-NVIDIA L40"},
        {"gpuIds": "ADA_48_PRO,-NVIDIA L40"},
    ),
}


@pytest.fixture
def emulator() -> Iterator[RunPodRESTEmulator]:
    yield from running_emulator()


@pytest.mark.parametrize("case", sorted(CASES))
def test_patch_sends_only_the_change_and_leaves_no_drift(emulator: RunPodRESTEmulator, case: str) -> None:
    old, new, expected = CASES[case]
    assert endpoint_patch(old, new) == expected
    with RunPodREST(emulator.api_key, url=emulator.url) as api:
        created = api.save_endpoint(old)
        if expected:
            api.save_endpoint({"id": created["id"], **expected})
        read = api.get_endpoint(created["id"])
    assert read is not None
    managed = (set(old) | set(new)) - {"id"}
    assert endpoint_patch({k: read[k] for k in managed}, new) == {}
    assert emulator.operations().count("updateEndpoint") == (1 if expected else 0)


def test_volumes_attach_detach_and_swap() -> None:
    one = {**BASE, "networkVolumeId": "vol1"}
    assert endpoint_patch(BASE, one) == {"networkVolumeId": "vol1", "networkVolumeIds": None}
    assert endpoint_patch(one, BASE) == {"networkVolumeId": None, "networkVolumeIds": None}
    several = {**BASE, "networkVolumeIds": [{"networkVolumeId": "vol2"}, {"networkVolumeId": "vol1"}]}
    assert endpoint_patch(several, {**BASE, "networkVolumeIds": ["vol1", "vol2"]}) == {}


def test_what_cannot_be_unset_or_is_unknown_is_refused() -> None:
    with pytest.raises(ValueError, match="imageName cannot be unset"):
        endpoint_patch(BASE, without("imageName"))
    with pytest.raises(ValueError, match="gpuID has no REST v2 field"):
        endpoint_patch(BASE, {**BASE, "gpuID": "x"})


def test_template_id_is_sent_only_when_it_changed() -> None:
    old = {**BASE, "templateId": "tpl1"}
    assert endpoint_patch(old, {**BASE, "templateId": "tpl2"}) == {"templateId": "tpl2"}
    assert endpoint_patch(old, old) == {}
    assert (
        endpoint_patch({**BASE, "templateId": None}, old) == {}
    )  # a REST read has none: nothing to re-apply
