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
from tests.infra_support import Backend  # noqa: E402

IMAGE = "ghcr.io/acme/comfy-runpod@sha256:" + "ab" * 32
NEW_IMAGE = "ghcr.io/acme/comfy-runpod@sha256:" + "cd" * 32


def state(outs: dict[str, Any] | None) -> dict[str, Any]:
    assert outs is not None
    return {**outs, "__provider": "opaque"}


def endpoint_inputs(template_id: str, volume_id: str, **extra: Any) -> dict[str, Any]:
    """What the program hands the Endpoint (numbers as floats, __provider present: pulumi #13830)."""
    return {
        "name": "comfy",
        "templateId": template_id,
        "gpuIds": ["ADA_24", "AMPERE_48"],
        "networkVolumeId": volume_id,
        "volumeDataCenterId": "EU-RO-1",
        "locations": ["EU-RO-1"],
        "workersMin": 0.0,
        "workersMax": 3.0,
        "idleTimeout": 5.0,
        "allowedCudaVersions": ["13.0"],
        "flashBootType": "FLASHBOOT",
        "imageName": IMAGE,
        "containerDiskInGb": 20.0,
        "env": {"OUTPUT_MODE": "s3"},
        "dockerArgs": "",
        "__provider": "opaque",
        "version": None,
    } | extra


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
