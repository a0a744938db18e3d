"""The Pulumi program under ``pulumi.runtime.set_mocks`` (no engine, no RunPod): wiring and options."""

from __future__ import annotations

from typing import Any

import pytest

pulumi = pytest.importorskip("pulumi")

from infra.program import main  # noqa: E402


class Mocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[Any] = []

    def new_resource(self, args: Any) -> tuple[str, dict[str, Any]]:
        self.resources.append(args)
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: Any) -> dict[str, Any]:
        return {}


def test_the_program_creates_a_protected_volume_from_config() -> None:
    mocks = Mocks()
    pulumi.runtime.set_mocks(mocks, project="comfy-runpod", stack="dev", preview=False)
    pulumi.runtime.set_all_config(
        {"comfy-runpod:runpodApiKey": "secret-key", "comfy-runpod:volumeSizeGb": "250"},
        ["comfy-runpod:runpodApiKey"],
    )

    @pulumi.runtime.test
    def check() -> Any:
        main()
        outputs = pulumi.runtime.get_root_resource().outputs  # type: ignore[union-attr]

        def verify(values: list[Any]) -> None:
            volume_id, data_center = values
            assert volume_id == "models-volume-id"
            assert data_center == "EU-RO-1"
            [volume] = [r for r in mocks.resources if r.typ == "pulumi-python:dynamic/runpod:NetworkVolume"]
            assert volume.inputs["size"] == 250
            assert volume.inputs["name"] == "comfy-models"
            assert "secret-key" not in repr(volume.inputs)

        return pulumi.Output.all(outputs["volumeId"], outputs["dataCenterId"]).apply(verify)

    check()
