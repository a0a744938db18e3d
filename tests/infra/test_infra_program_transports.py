"""The program under Pulumi's mocks for both RunPod APIs: ``runpodApi`` is read and checked with the other
keys, and it is never a resource input, so switching it changes no input (hence no diff, no replacement)."""

from __future__ import annotations

import json
from typing import Any

import pytest

pulumi = pytest.importorskip("pulumi")

from infra.program import main  # noqa: E402
from infra.settings import load_settings  # noqa: E402
from tests.infra_support import DIGEST, Mocks, configure_with  # noqa: E402

DYNAMIC = "pulumi-python:dynamic/runpod:"


def declared(mocks: Mocks, config: dict[str, str]) -> dict[str, dict[str, Any]]:
    configure_with(config)

    @pulumi.runtime.test
    def run() -> Any:
        main()
        return pulumi.runtime.get_root_resource().outputs["endpointId"]  # type: ignore[union-attr]

    run()
    return {
        a.name: {k: v for k, v in a.inputs.items() if k != "__provider"}
        for a in mocks.created
        if a.typ.startswith(DYNAMIC)
    }


def test_the_transport_is_read_but_never_an_input(mocks: Mocks, transport: str) -> None:
    resources = declared(mocks, {"runpodApi": transport})
    assert load_settings(pulumi.Config()).runpod_api == transport
    assert sorted(resources) == ["comfy-endpoint", "comfy-template", "models-volume"]
    assert "runpodApi" not in json.dumps(resources)
    assert all(transport not in json.dumps(inputs) for inputs in resources.values())


def test_rest_is_the_default(mocks: Mocks) -> None:
    declared(mocks, {})
    assert load_settings(pulumi.Config()).runpod_api == "rest"


def test_the_endpoint_gets_the_container_settings_and_the_preflight_keys(
    mocks: Mocks, transport: str
) -> None:
    config = {
        "runpodApi": transport,
        "containerDiskGb": "40",
        "templateEnv": '{"OUTPUT_MODE": "s3"}',
        "endpoints": json.dumps({"ada": {"gpuIds": ["ADA_24"]}, "h200": {"gpuIds": ["HOPPER_141"]}}),
    }
    resources = declared(mocks, config)
    for key in ("ada", "h200"):
        endpoint, template = resources[f"{key}-endpoint"], resources[f"{key}-template"]
        for field in ("imageName", "containerDiskInGb", "env", "dockerArgs"):
            assert endpoint[field] == template[field], (key, field)
        assert (endpoint["imageName"], endpoint["containerDiskInGb"]) == (DIGEST, 40)
        assert endpoint["preflight"] == {
            "dataCenterId": "EU-RO-1",
            "dataCenterKey": "dataCenterId",
            "gpuIds": f"endpoints.{key}.gpuIds",
            "allowedCudaVersions": f"endpoints.{key}.allowedCudaVersions",
        }


def test_volume_type_reaches_the_volume_only_when_set(mocks: Mocks, transport: str) -> None:
    assert "volumeType" not in declared(mocks, {"runpodApi": transport})["models-volume"]


def test_a_set_volume_type_reaches_the_volume(mocks: Mocks) -> None:
    volume = declared(mocks, {"volumeType": "HIGH_PERFORMANCE"})["models-volume"]
    assert volume["volumeType"] == "HIGH_PERFORMANCE"
