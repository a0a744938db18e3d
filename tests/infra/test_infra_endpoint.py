"""The Endpoint dynamic provider against the RunPod emulator (no Pulumi CLI, no RunPod)."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("graphql")
pulumi = pytest.importorskip("pulumi")

from infra.providers.endpoint import EndpointProvider, wire  # noqa: E402
from infra.runpod_graphql import RunPodAPIError, RunPodTransportError  # noqa: E402
from tests.infra_support import ProviderLoader  # noqa: E402
from tests.runpod_emulator import Fault, RunPodEmulator  # noqa: E402


@pytest.fixture
def provider(load_provider: ProviderLoader) -> EndpointProvider:
    return load_provider(EndpointProvider)


@pytest.fixture
def deps(emulator: RunPodEmulator) -> dict[str, str]:
    """A volume and two templates in the emulated account, as the program would have created them."""
    volume = emulator.account.create_volume({"name": "comfy-models", "size": 50, "dataCenterId": "EU-RO-1"})
    first = emulator.account.save_template({"name": "comfy-a", "imageName": "img:a", "isServerless": True})
    second = emulator.account.save_template({"name": "comfy-b", "imageName": "img:b", "isServerless": True})
    return {"volume": volume["id"], "template": first["id"], "template2": second["id"]}


def inputs(deps: dict[str, str], **extra: Any) -> dict[str, Any]:
    # Numbers arrive as floats and __provider is always present (pulumi #13830).
    return {
        "name": "comfy",
        "templateId": deps["template"],
        "gpuIds": ["ADA_24", "AMPERE_48"],
        "networkVolumeId": deps["volume"],
        "volumeDataCenterId": "EU-RO-1",
        "locations": ["EU-RO-1"],
        "workersMin": 0.0,
        "workersMax": 3.0,
        "idleTimeout": 5.0,
        "__provider": "opaque",
        "version": None,
    } | extra


def state(outs: dict[str, Any] | None) -> dict[str, Any]:
    assert outs is not None
    return {**outs, "__provider": "opaque"}


def test_lifecycle_with_in_place_updates(
    provider: EndpointProvider, emulator: RunPodEmulator, deps: dict[str, str]
) -> None:
    checked = provider.check({}, inputs(deps))
    assert checked.failures == []
    assert isinstance(checked.inputs["workersMax"], int)
    assert "__provider" not in checked.inputs

    created = provider.create(checked.inputs)
    live = emulator.account.endpoints[created.id]
    assert live["gpuIds"] == "ADA_24,AMPERE_48"
    assert live["workersMax"] == 3
    assert live["idleTimeout"] == 5
    assert live["scalerType"] == "QUEUE_DELAY"
    assert live["networkVolumeId"] == deps["volume"]
    assert created.outs is not None
    assert created.outs["volumeDataCenterId"] == "EU-RO-1"
    assert "__provider" not in created.outs

    changes = {
        "templateId": deps["template2"],
        "gpuIds": ["HOPPER_141"],
        "workersMax": 5.0,
        "workersMin": 1.0,
    }
    news = inputs(deps, **changes)
    diff = provider.diff(created.id, state(created.outs), news)
    assert diff.changes is True
    assert diff.replaces == []
    updated = provider.update(created.id, state(created.outs), news)
    live = emulator.account.endpoints[created.id]
    assert (live["templateId"], live["gpuIds"], live["workersMin"], live["workersMax"]) == (
        deps["template2"],
        "HOPPER_141",
        1,
        5,
    )
    # Full replace: fields that did not change were sent again, not reset to the SDL defaults.
    assert live["idleTimeout"] == 5
    assert live["locations"] == "EU-RO-1"
    assert updated.outs is not None
    assert updated.outs["version"] == 1

    read = provider.read(created.id, state(updated.outs))
    assert read.id == created.id
    assert read.inputs is not None
    assert "version" not in read.inputs

    provider.delete(created.id, state(updated.outs))
    assert emulator.account.endpoints == {}
    assert provider.read(created.id, state(updated.outs)).id == ""


def test_no_op_diff_is_loose_on_server_normalized_fields(
    provider: EndpointProvider, emulator: RunPodEmulator, deps: dict[str, str]
) -> None:
    created = provider.create(inputs(deps))
    # RunPod may reorder gpuIds and locations and answer in another case.
    emulator.account.endpoints[created.id]["gpuIds"] = "AMPERE_48, ADA_24"
    emulator.account.endpoints[created.id]["locations"] = "eu-ro-1"
    refreshed = provider.read(created.id, state(created.outs))
    news = inputs(deps) | {"__provider": "new-pickle", "gpuIds": "ADA_24,AMPERE_48"}
    assert provider.diff(created.id, state(refreshed.outs), news).changes is False
    assert provider.diff(created.id, state(created.outs), inputs(deps)).changes is False


def test_idle_scale_down_shows_on_refresh_and_up_restores_it(
    provider: EndpointProvider, emulator: RunPodEmulator, deps: dict[str, str]
) -> None:
    created = provider.create(inputs(deps))
    emulator.account.endpoints[created.id]["workersMax"] = 0  # RunPod's 7-day idle scale-down
    refreshed = provider.read(created.id, state(created.outs))
    assert refreshed.outs is not None
    assert refreshed.outs["workersMax"] == 0
    assert provider.diff(created.id, state(refreshed.outs), inputs(deps)).changes is True
    provider.update(created.id, state(refreshed.outs), inputs(deps))
    assert emulator.account.endpoints[created.id]["workersMax"] == 3


def test_unknowns_during_preview_count_as_changes(provider: EndpointProvider, deps: dict[str, str]) -> None:
    unknown = pulumi.output.Unknown()
    news = inputs(deps, templateId=unknown, volumeDataCenterId=unknown)
    assert provider.check({}, news).failures == []
    assert provider.diff("ep1", state(inputs(deps)), news).changes is True


@pytest.mark.parametrize(
    ("extra", "prop", "words"),
    [
        ({"locations": ["US-KS-2"]}, "locations", "must include the network volume's data center EU-RO-1"),
        ({"gpuIds": ["NVIDIA GeForce RTX 4090"]}, "gpuIds", "unknown GPU pool id"),
        ({"gpuIds": []}, "gpuIds", "at least one GPU pool"),
        ({"workersMin": 4.0, "workersMax": 2.0}, "workersMin", "lower workersMin or raise workersMax"),
        ({"idleTimeout": 0.0}, "idleTimeout", "1..3600"),
        ({"scalerValue": 0.0}, "scalerValue", "at least 1"),
        ({"scalerType": "FAST"}, "scalerType", "QUEUE_DELAY"),
        ({"workersMax": 2.5}, "workersMax", "whole number"),
        ({"name": "ab"}, "name", "3 characters"),
        ({"allowedCudaVersions": ["13"]}, "allowedCudaVersions", "CUDA versions like 13.0"),
        ({"allowedCudaVersions": []}, "allowedCudaVersions", "empty"),
        ({"flashBootType": "ON"}, "flashBootType", "OFF, FLASHBOOT, PRIORITY_FLASHBOOT"),
    ],
)
def test_check_cross_checks_before_any_api_call(
    provider: EndpointProvider,
    emulator: RunPodEmulator,
    deps: dict[str, str],
    extra: dict[str, Any],
    prop: str,
    words: str,
) -> None:
    failures = provider.check({}, inputs(deps, **extra)).failures
    assert [f.property for f in failures] == [prop]
    assert words in failures[0].reason
    assert emulator.requests == []


def test_gpu_exclusion_tokens_and_empty_locations_are_accepted(
    provider: EndpointProvider, deps: dict[str, str]
) -> None:
    news = inputs(deps, gpuIds="AMPERE_16,AMPERE_24,-NVIDIA L4", locations=[])
    assert provider.check({}, news).failures == []
    assert wire(news)["gpuIds"] == "AMPERE_16,AMPERE_24,-NVIDIA L4"


def test_delete_scales_to_zero_first_with_a_full_save(
    provider: EndpointProvider, emulator: RunPodEmulator, deps: dict[str, str]
) -> None:
    created = provider.create(inputs(deps, workersMin=1.0))
    emulator.requests.clear()
    provider.delete(created.id, state(created.outs))
    assert emulator.operations() == ["SaveEndpoint", "DeleteEndpoint"]
    scale_down = emulator.requests[0].variables["input"]
    assert (scale_down["workersMin"], scale_down["workersMax"]) == (0, 0)
    assert scale_down["templateId"] == deps["template"]
    assert scale_down["gpuIds"] == "ADA_24,AMPERE_48"
    assert emulator.account.endpoints == {}


def test_delete_retries_refusals(
    provider: EndpointProvider, emulator: RunPodEmulator, deps: dict[str, str]
) -> None:
    created = provider.create(inputs(deps))
    emulator.inject(
        Fault(200, message="Endpoint has running workers", operation="DeleteEndpoint"),
        Fault(500, operation="DeleteEndpoint"),
    )
    provider.delete(created.id, state(created.outs))
    assert emulator.operations()[-3:] == ["DeleteEndpoint"] * 3
    assert emulator.account.endpoints == {}


def test_delete_gives_up_after_the_attempts(
    provider: EndpointProvider, emulator: RunPodEmulator, deps: dict[str, str]
) -> None:
    created = provider.create(inputs(deps))
    emulator.inject(*[Fault(200, message="Endpoint is busy", operation="DeleteEndpoint")] * 4)
    with pytest.raises(RunPodAPIError, match="Endpoint is busy"):
        provider.delete(created.id, state(created.outs))
    assert emulator.operations().count("DeleteEndpoint") == EndpointProvider.delete_attempts


def test_delete_of_a_missing_endpoint_succeeds(
    provider: EndpointProvider, emulator: RunPodEmulator, deps: dict[str, str]
) -> None:
    provider.delete("ep-gone", state(inputs(deps)))
    assert emulator.operations() == ["SaveEndpoint"]
    created = provider.create(inputs(deps))
    # Gone between the scale-down and the delete: also success.
    emulator.inject(Fault(200, message=f"Endpoint {created.id} not found", operation="DeleteEndpoint"))
    provider.delete(created.id, state(created.outs))


def test_create_adopts_after_a_crash_before_the_state_write(
    provider: EndpointProvider, emulator: RunPodEmulator, deps: dict[str, str]
) -> None:
    emulator.inject(Fault(500, operation="SaveEndpoint", apply_first=True))
    with pytest.raises(RunPodTransportError):
        provider.create(inputs(deps))
    again = provider.create(inputs(deps))
    assert list(emulator.account.endpoints) == [again.id]


def test_cuda_versions_and_flashboot_are_sent_on_every_save_and_compared_loosely(
    provider: EndpointProvider, emulator: RunPodEmulator, deps: dict[str, str]
) -> None:
    news = inputs(deps, allowedCudaVersions=["13.0", "12.9"], flashBootType="FLASHBOOT", gpuCount=1.0)
    created = provider.create(provider.check({}, news).inputs)
    live = emulator.account.endpoints[created.id]
    assert (live["allowedCudaVersions"], live["flashBootType"]) == ("13.0,12.9", "FLASHBOOT")
    assert created.outs is not None
    assert created.outs["allowedCudaVersions"] == ["13.0", "12.9"]
    # RunPod may answer the comma list in another order: no diff for the same set.
    live["allowedCudaVersions"] = "12.9, 13.0"
    refreshed = provider.read(created.id, state(created.outs))
    assert provider.diff(created.id, state(refreshed.outs), news).changes is False
    # Any real change of the set, or FlashBoot switched off in the console, is a diff; update restores it.
    only_13 = inputs(deps, allowedCudaVersions=["13.0"], flashBootType="FLASHBOOT")
    assert provider.diff(created.id, state(refreshed.outs), only_13).changes is True
    live["flashBootType"] = "OFF"
    drifted = provider.read(created.id, state(created.outs))
    assert drifted.outs is not None and drifted.outs["flashBootType"] == "OFF"
    assert provider.diff(created.id, state(drifted.outs), news).changes is True
    provider.update(created.id, state(drifted.outs), news)
    assert emulator.account.endpoints[created.id]["flashBootType"] == "FLASHBOOT"
    # Full replace: the scale-down before delete sends the CUDA versions too (else RunPod would reset them).
    emulator.requests.clear()
    provider.delete(created.id, state(created.outs))
    assert emulator.requests[0].variables["input"]["allowedCudaVersions"] == "13.0,12.9"


def test_a_cuda_version_runpod_does_not_know_is_refused_with_its_message(
    provider: EndpointProvider, deps: dict[str, str]
) -> None:
    with pytest.raises(RunPodAPIError, match=r"Invalid CUDA version 13\.9"):
        provider.create(inputs(deps, allowedCudaVersions=["13.9"]))


def test_several_volumes_one_per_data_center(
    provider: EndpointProvider, emulator: RunPodEmulator, deps: dict[str, str]
) -> None:
    other = emulator.account.create_volume({"name": "comfy-models", "size": 50, "dataCenterId": "US-KS-2"})
    news = inputs(
        deps,
        networkVolumeId=None,
        networkVolumeIds=[deps["volume"], other["id"]],
        volumeDataCenterIds=["EU-RO-1", "US-KS-2"],
        locations=["EU-RO-1", "US-KS-2"],
    )
    news = {k: v for k, v in news.items() if v is not None}
    checked = provider.check({}, news)
    assert checked.failures == []
    created = provider.create(checked.inputs)
    live = emulator.account.endpoints[created.id]
    assert live["networkVolumeIds"] == [{"networkVolumeId": deps["volume"]}, {"networkVolumeId": other["id"]}]
    assert "networkVolumeId" not in live
    assert created.outs is not None
    assert created.outs["networkVolumeIds"] == [deps["volume"], other["id"]]
    assert created.outs["volumeDataCenterIds"] == ["EU-RO-1", "US-KS-2"]
    # Read back in another order: the same set, no diff.
    live["networkVolumeIds"].reverse()
    refreshed = provider.read(created.id, state(created.outs))
    assert provider.diff(created.id, state(refreshed.outs), news).changes is False
    # Back to one volume: a change, sent as networkVolumeId (networkVolumeIds left out).
    single = inputs(deps)
    assert provider.diff(created.id, state(refreshed.outs), single).changes is True
    provider.update(created.id, state(refreshed.outs), single)
    live = emulator.account.endpoints[created.id]
    assert (live["networkVolumeId"], live.get("networkVolumeIds")) == (deps["volume"], None)


def test_a_volume_added_in_the_console_is_drift(
    provider: EndpointProvider, emulator: RunPodEmulator, deps: dict[str, str]
) -> None:
    other = emulator.account.create_volume({"name": "comfy-models", "size": 50, "dataCenterId": "US-KS-2"})
    created = provider.create(inputs(deps, locations=[]))
    live = emulator.account.endpoints[created.id]
    live.pop("networkVolumeId")
    live["networkVolumeIds"] = [{"networkVolumeId": deps["volume"]}, {"networkVolumeId": other["id"]}]
    refreshed = provider.read(created.id, state(created.outs))
    assert refreshed.outs is not None
    assert refreshed.outs["networkVolumeIds"] == [deps["volume"], other["id"]]
    assert provider.diff(created.id, state(refreshed.outs), inputs(deps, locations=[])).changes is True


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (
            {
                "networkVolumeIds": ["v1", "v2"],
                "volumeDataCenterIds": ["EU-RO-1", "US-KS-2"],
                "locations": [],
            },
            "not both",
        ),
        (
            {
                "networkVolumeId": None,
                "networkVolumeIds": ["v1", "v2"],
                "volumeDataCenterIds": ["EU-RO-1", "eu-ro-1"],
                "locations": [],
            },
            "at most one volume per data center",
        ),
        (
            {
                "networkVolumeId": None,
                "networkVolumeIds": ["v1", "v2"],
                "volumeDataCenterIds": ["EU-RO-1", "US-KS-2"],
            },
            "must include the network volume's data center US-KS-2",
        ),
    ],
)
def test_several_volumes_are_cross_checked(
    provider: EndpointProvider, deps: dict[str, str], extra: dict[str, Any], words: str
) -> None:
    news = {k: v for k, v in inputs(deps, **extra).items() if v is not None}
    failures = provider.check({}, news).failures
    assert len(failures) == 1
    assert words in failures[0].reason
