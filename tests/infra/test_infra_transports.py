"""Each dynamic provider's lifecycle, written once and run over both RunPod APIs (``runpodApi``: graphql,
rest) against the emulator of each (the REST one checks every request and answer against RunPod's OpenAPI
file)."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("graphql")
pytest.importorskip("openapi_core")
pulumi = pytest.importorskip("pulumi")

from infra.providers.endpoint import EndpointProvider  # noqa: E402
from infra.providers.network_volume import NetworkVolumeProvider, VolumeShrinkError  # noqa: E402
from infra.providers.registry_auth import RegistryAuthProvider, password_matches  # noqa: E402
from infra.providers.template import TemplateProvider  # noqa: E402
from infra.runpod_graphql import RunPodAPIError  # noqa: E402
from tests.infra_support import IMAGE, NEW_IMAGE, Backend, endpoint_inputs, state  # noqa: E402


def test_volume_lifecycle(runpod: Backend) -> None:
    provider = runpod.load(NetworkVolumeProvider)
    news = {"name": "comfy-models", "size": 50.0, "dataCenterId": "EU-RO-1", "__provider": "opaque"}
    checked = provider.check({}, news)
    assert checked.failures == []
    created = provider.create(checked.inputs)
    assert runpod.volumes() == {created.id: 50}
    assert provider.diff(created.id, state(created.outs), news).changes is False

    grown = news | {"size": 80.0}
    assert provider.diff(created.id, state(created.outs), grown).replaces == []
    updated = provider.update(created.id, state(created.outs), provider.check({}, grown).inputs)
    assert runpod.volumes() == {created.id: 80}
    assert [f.property for f in provider.check(state(updated.outs), news).failures] == ["size"]

    runpod.grow_volume(created.id, 120)  # grown in the console: refresh shows it, and shrinking is refused
    refreshed = provider.read(created.id, state(updated.outs))
    assert refreshed.outs is not None and refreshed.outs["size"] == 120
    with pytest.raises(VolumeShrinkError):
        provider.diff(created.id, state(refreshed.outs), grown)

    elsewhere = news | {"size": 120.0, "dataCenterId": "US-KS-2"}
    moved = provider.diff(created.id, state(refreshed.outs), elsewhere)
    assert moved.replaces == ["dataCenterId"]
    provider.delete(created.id, state(refreshed.outs))
    assert runpod.volumes() == {}
    assert provider.read(created.id, state(refreshed.outs)).id == ""
    provider.delete(created.id, state(refreshed.outs))  # already gone: success


def test_template_lifecycle(runpod: Backend) -> None:
    provider = runpod.load(TemplateProvider)
    news = {
        "name": "comfy-runpod",
        "imageName": IMAGE,
        "containerDiskInGb": 20.0,
        "dockerArgs": "",
        "env": {"OUTPUT_MODE": "s3"},
        "__provider": "opaque",
    }
    checked = provider.check({}, news)
    assert checked.failures == []
    created = provider.create(checked.inputs)
    assert runpod.templates() == {created.id: IMAGE}
    assert provider.diff(created.id, state(created.outs), news).changes is False
    refreshed = provider.read(created.id, state(created.outs))
    assert provider.diff(created.id, state(refreshed.outs), news).changes is False

    newer = news | {"imageName": NEW_IMAGE}
    assert provider.diff(created.id, state(refreshed.outs), newer).changes is True
    updated = provider.update(created.id, state(refreshed.outs), newer)
    assert runpod.templates() == {created.id: NEW_IMAGE}
    assert updated.outs is not None and updated.outs["env"] == {"OUTPUT_MODE": "s3"}

    provider.delete(created.id, state(updated.outs))
    assert runpod.templates() == {}
    provider.delete(created.id, state(updated.outs))  # already gone: success


def test_endpoint_lifecycle_drift_and_delete(runpod: Backend) -> None:
    volume = runpod.new_volume()
    template = runpod.new_template("comfy-runpod", IMAGE)
    provider = runpod.load(EndpointProvider)
    news = endpoint_inputs(template, volume)
    checked = provider.check({}, news)
    assert checked.failures == []
    created = provider.create(checked.inputs)
    live = runpod.live_endpoint(created.id)
    assert live == {
        "workersMin": 0,
        "workersMax": 3,
        "gpuIds": {"ADA_24", "AMPERE_48"},
        "flashBootType": "FLASHBOOT",
        "volumes": {volume},
    }
    assert created.outs is not None
    assert created.outs["templateId"] == template
    assert created.outs["version"] >= 0
    assert provider.diff(created.id, state(created.outs), news).changes is False
    refreshed = provider.read(created.id, state(created.outs))
    assert refreshed.id == created.id
    assert provider.diff(created.id, state(refreshed.outs), news).changes is False

    runpod.scale_down(created.id, 0)  # RunPod's idle scale-down: refresh shows it, up restores it
    drifted = provider.read(created.id, state(created.outs))
    assert drifted.outs is not None and drifted.outs["workersMax"] == 0
    diff = provider.diff(created.id, state(drifted.outs), news)
    assert (diff.changes, diff.replaces) == (True, [])
    provider.update(created.id, state(drifted.outs), provider.check({}, news).inputs)
    assert runpod.live_endpoint(created.id)["workersMax"] == 3

    more = news | {"gpuIds": ["HOPPER_141"], "workersMin": 1.0, "workersMax": 5.0}
    updated = provider.update(created.id, state(created.outs), provider.check({}, more).inputs)
    live = runpod.live_endpoint(created.id)
    assert (live["gpuIds"], live["workersMin"], live["workersMax"]) == ({"HOPPER_141"}, 1, 5)
    assert live["flashBootType"] == "FLASHBOOT"  # untouched fields kept (full replace / partial PATCH)

    provider.delete(created.id, state(updated.outs))
    assert runpod.endpoint_ids() == []
    assert provider.read(created.id, state(updated.outs)).id == ""
    provider.delete(created.id, state(updated.outs))  # already gone: success


def test_endpoint_create_adopts_after_a_lost_state_write(runpod: Backend) -> None:
    volume = runpod.new_volume()
    template = runpod.new_template("comfy-runpod", IMAGE)
    provider = runpod.load(EndpointProvider)
    first = provider.create(provider.check({}, endpoint_inputs(template, volume)).inputs)
    # Pulumi never recorded `first` (a crash before the state write): the next create adopts it.
    again = provider.create(provider.check({}, endpoint_inputs(template, volume, workersMax=4.0)).inputs)
    assert again.id == first.id
    assert runpod.endpoint_ids() == [first.id]
    assert runpod.live_endpoint(first.id)["workersMax"] == 4


def test_registry_auth_lifecycle(runpod: Backend) -> None:
    provider = runpod.load(RegistryAuthProvider)
    news = {"name": "comfy-runpod-registry", "username": "acme", "password": "pw-1-secret", "__provider": "x"}
    created = provider.create(provider.check({}, news).inputs)
    assert list(runpod.registries()) == [created.id]
    assert created.outs is not None and "password" not in created.outs
    assert password_matches("pw-1-secret", created.outs["passwordDigest"])
    assert provider.diff(created.id, state(created.outs), news).changes is False
    refreshed = provider.read(created.id, state(created.outs))
    assert refreshed.outs is not None and refreshed.outs["name"] == "comfy-runpod-registry"
    assert provider.diff(created.id, state(refreshed.outs), news).changes is False

    rotated = provider.diff(created.id, state(created.outs), news | {"password": "pw-2-secret"})
    assert rotated.changes is True
    if runpod.rest:  # no update over REST: a new credential first, then the old one goes
        assert (rotated.replaces, rotated.delete_before_replace) == (["password"], False)
    else:
        assert rotated.replaces == []
    provider.delete(created.id, state(created.outs))
    assert runpod.registries() == {}


VOLUME = {"name": "comfy-models", "size": 50.0, "dataCenterId": "EU-RO-1", "__provider": "opaque"}


def test_volume_create_adopts_after_a_lost_answer_and_grows_a_smaller_one(runpod: Backend) -> None:
    provider = runpod.load(NetworkVolumeProvider)
    runpod.lose_create_answer("volume")
    try:
        first = provider.create(provider.check({}, VOLUME).inputs)  # REST: the client recovers it
    except Exception:  # GraphQL: the error reaches Pulumi, and the next run adopts the volume
        first = provider.create(provider.check({}, VOLUME).inputs)
    assert list(runpod.volumes()) == [first.id]
    bigger = provider.create(provider.check({}, VOLUME | {"size": 70.0}).inputs)
    assert runpod.volumes() == {first.id: 70}
    assert bigger.id == first.id


def test_volume_create_refuses_to_guess_between_duplicates(runpod: Backend) -> None:
    runpod.new_volume()
    runpod.new_volume()
    with pytest.raises(RuntimeError, match="several RunPod volumes are named 'comfy-models' in EU-RO-1"):
        runpod.load(NetworkVolumeProvider).create(dict(VOLUME))


def test_a_volume_deleted_out_of_band_drops_out_on_refresh(runpod: Backend) -> None:
    provider = runpod.load(NetworkVolumeProvider)
    created = provider.create(provider.check({}, VOLUME).inputs)
    runpod.account.volumes.clear()
    assert provider.read(created.id, state(created.outs)).id == ""


def test_template_create_adopts_the_template_of_the_same_name(runpod: Backend) -> None:
    existing = runpod.new_template("comfy-runpod", "old/image:1")
    provider = runpod.load(TemplateProvider)
    news = {"name": "comfy-runpod", "imageName": IMAGE, "env": {}, "__provider": "x"}
    created = provider.create(provider.check({}, news).inputs)
    assert created.id == existing
    assert runpod.templates() == {existing: IMAGE}


def test_env_values_are_redacted_from_template_and_endpoint_errors(runpod: Backend) -> None:
    secret = "hf_secret-token-0123456789"
    templates = runpod.load(TemplateProvider)
    runpod.refuse("template", f"invalid env value {secret!r} for HF_TOKEN", create=True)
    with pytest.raises(RunPodAPIError) as info:
        templates.create(
            templates.check({}, {"name": "comfy-x", "imageName": IMAGE, "env": {"HF_TOKEN": secret}}).inputs
        )
    assert secret not in str(info.value) and "***" in str(info.value)
    volume, template = runpod.new_volume(), runpod.new_template("comfy-runpod", IMAGE)
    endpoints = runpod.load(EndpointProvider)
    runpod.refuse("endpoint", f"bad env {secret}", create=True)
    with pytest.raises(RunPodAPIError) as info:
        endpoints.create(
            endpoints.check({}, endpoint_inputs(template, volume, env={"HF_TOKEN": secret})).inputs
        )
    assert secret not in str(info.value)


def test_the_registry_password_is_redacted_from_errors(runpod: Backend) -> None:
    provider = runpod.load(RegistryAuthProvider)
    runpod.refuse("registry", "bad credentials pw-1-secret", create=True)
    news = {"name": "comfy-runpod-registry", "username": "acme", "password": "pw-1-secret"}
    with pytest.raises(RunPodAPIError) as info:
        provider.create(provider.check({}, news).inputs)
    assert "pw-1-secret" not in str(info.value)


@pytest.mark.parametrize(
    ("extra", "prop"),
    [
        ({"locations": ["US-KS-2"]}, "locations"),
        ({"gpuIds": ["NVIDIA GeForce RTX 4090"]}, "gpuIds"),
        ({"workersMin": 4.0, "workersMax": 2.0}, "workersMin"),
        ({"idleTimeout": 0.0}, "idleTimeout"),
        ({"allowedCudaVersions": ["13"]}, "allowedCudaVersions"),
        ({"containerDiskInGb": 2.0}, "containerDiskInGb"),
    ],
)
def test_endpoint_check_refuses_before_any_api_call(
    runpod: Backend, extra: dict[str, Any], prop: str
) -> None:
    failures = runpod.load(EndpointProvider).check({}, endpoint_inputs("tpl1", "vol1", **extra)).failures
    assert [f.property for f in failures] == [prop]
    assert runpod.operations() == []


def test_endpoint_delete_retries_refusals_then_gives_up(runpod: Backend) -> None:
    volume, template = runpod.new_volume(), runpod.new_template("comfy-runpod", IMAGE)
    provider = runpod.load(EndpointProvider)
    created = provider.create(provider.check({}, endpoint_inputs(template, volume)).inputs)
    runpod.refuse("endpoint", "Endpoint is busy", times=2)
    provider.delete(created.id, state(created.outs))
    assert runpod.endpoint_ids() == []
    template = runpod.new_template("comfy-runpod-2", IMAGE)  # REST deleted the first with the endpoint
    again = provider.create(provider.check({}, endpoint_inputs(template, volume)).inputs)
    runpod.refuse("endpoint", "Endpoint is busy", times=EndpointProvider.delete_attempts)
    with pytest.raises(RunPodAPIError, match="Endpoint is busy"):
        provider.delete(again.id, state(again.outs))
    assert runpod.endpoint_ids() == [again.id]


def test_several_volumes_one_per_data_center(runpod: Backend) -> None:
    first, other = runpod.new_volume(), runpod.new_volume(data_center="US-KS-2")
    template = runpod.new_template("comfy-runpod", IMAGE)
    provider = runpod.load(EndpointProvider)
    news = endpoint_inputs(
        template,
        first,
        networkVolumeId=None,
        networkVolumeIds=[first, other],
        volumeDataCenterIds=["EU-RO-1", "US-KS-2"],
        locations=["EU-RO-1", "US-KS-2"],
    )
    news = {k: v for k, v in news.items() if v is not None}
    created = provider.create(provider.check({}, news).inputs)
    assert runpod.live_endpoint(created.id)["volumes"] == {first, other}
    refreshed = provider.read(created.id, state(created.outs))
    assert provider.diff(created.id, state(refreshed.outs), news).changes is False
    single = endpoint_inputs(template, first)
    assert provider.diff(created.id, state(refreshed.outs), single).changes is True
    provider.update(created.id, state(refreshed.outs), provider.check({}, single).inputs)
    assert runpod.live_endpoint(created.id)["volumes"] == {first}
