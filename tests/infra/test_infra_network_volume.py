"""The NetworkVolume dynamic provider against the RunPod emulator (no Pulumi CLI, no RunPod).

The provider is round-tripped through Pulumi's own ``serialize_provider`` + ``dill.loads`` first, as the
engine would, then configured and called like the provider process calls it.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("graphql")
pulumi = pytest.importorskip("pulumi")

import dill  # noqa: E402

from infra.providers.network_volume import (  # noqa: E402
    NetworkVolumeProvider,
    VolumeShrinkError,
)
from infra.runpod_graphql import RunPodAPIError, RunPodTransportError  # noqa: E402
from tests.infra_support import as_the_engine_loads  # noqa: E402
from tests.runpod_emulator import Fault, RunPodEmulator  # noqa: E402


def make_provider(api_key: str | None) -> NetworkVolumeProvider:
    return as_the_engine_loads(NetworkVolumeProvider(), api_key, "graphql")


@pytest.fixture
def provider(emulator: RunPodEmulator) -> NetworkVolumeProvider:
    return make_provider(emulator.api_key)


def inputs(size: float = 50.0, dc: str = "EU-RO-1", name: str = "comfy-models") -> dict[str, Any]:
    # Numbers arrive as floats and __provider is always present (pulumi #13830).
    return {"name": name, "size": size, "dataCenterId": dc, "__provider": "opaque"}


def state(outs: dict[str, Any] | None) -> dict[str, Any]:
    return {**(outs or {}), "__provider": "opaque"}


def test_full_lifecycle(provider: NetworkVolumeProvider, emulator: RunPodEmulator) -> None:
    checked = provider.check({}, inputs())
    assert checked.failures == []
    assert checked.inputs == {"name": "comfy-models", "size": 50, "dataCenterId": "EU-RO-1"}
    assert isinstance(checked.inputs["size"], int)

    created = provider.create({**checked.inputs, "__provider": "opaque"})
    assert created.id in emulator.account.volumes
    assert created.outs == {"name": "comfy-models", "size": 50, "dataCenterId": "EU-RO-1"}

    read = provider.read(created.id, state(created.outs))
    assert read.id == created.id
    assert read.outs == created.outs

    diff = provider.diff(created.id, state(created.outs), inputs(size=80.0))
    assert diff.changes is True
    assert diff.replaces == []
    updated = provider.update(created.id, state(created.outs), inputs(size=80.0))
    assert updated.outs == {"name": "comfy-models", "size": 80, "dataCenterId": "EU-RO-1"}
    assert emulator.account.volumes[created.id]["size"] == 80

    provider.delete(created.id, state(updated.outs))
    assert emulator.account.volumes == {}
    assert provider.read(created.id, state(updated.outs)).id == ""


def test_no_op_diff_ignores_provider_and_float_numbers(provider: NetworkVolumeProvider) -> None:
    outs = {"name": "comfy-models", "size": 50, "dataCenterId": "EU-RO-1", "__provider": "old-pickle"}
    diff = provider.diff("vol1", outs, inputs(size=50.0) | {"__provider": "new-pickle"})
    assert diff.changes is False
    assert diff.replaces == []


def test_rename_is_in_place(provider: NetworkVolumeProvider) -> None:
    diff = provider.diff("vol1", state(inputs()), inputs(name="comfy-models-2"))
    assert diff.changes is True
    assert diff.replaces == []


def test_data_center_change_replaces(provider: NetworkVolumeProvider, emulator: RunPodEmulator) -> None:
    old = provider.create(inputs())
    diff = provider.diff(old.id, state(old.outs), inputs(dc="US-KS-2"))
    assert diff.changes is True
    assert diff.replaces == ["dataCenterId"]
    assert diff.delete_before_replace is False
    new = provider.create(inputs(dc="US-KS-2"))
    assert new.id != old.id
    provider.delete(old.id, state(old.outs))
    assert list(emulator.account.volumes) == [new.id]


def test_shrink_is_refused_at_check(provider: NetworkVolumeProvider) -> None:
    result = provider.check(inputs(size=100.0), inputs(size=50.0))
    assert [f.property for f in result.failures] == ["size"]
    assert "cannot shrink from 100 GB to 50 GB" in result.failures[0].reason


def test_shrink_below_the_live_size_is_refused_at_diff(
    provider: NetworkVolumeProvider, emulator: RunPodEmulator
) -> None:
    created = provider.create(inputs(size=50.0))
    emulator.account.volumes[created.id]["size"] = 200  # grown out of band, e.g. in the console
    refreshed = provider.read(created.id, state(created.outs))
    assert refreshed.outs is not None
    assert refreshed.outs["size"] == 200
    with pytest.raises(VolumeShrinkError, match="cannot shrink from 200 GB to 50 GB"):
        provider.diff(created.id, state(refreshed.outs), inputs(size=50.0))


@pytest.mark.parametrize(
    ("news", "prop"),
    [
        (inputs(size=5.0), "size"),
        (inputs(size=5000.0), "size"),
        (inputs(size=10.5), "size"),
        (inputs(name="ab"), "name"),
        ({"name": "comfy-models", "size": 50.0, "__provider": "x"}, "dataCenterId"),
        ({"name": "comfy-models", "dataCenterId": "EU-RO-1", "__provider": "x"}, "size"),
    ],
)
def test_check_rejects_bad_inputs(provider: NetworkVolumeProvider, news: dict[str, Any], prop: str) -> None:
    assert [f.property for f in provider.check({}, news).failures] == [prop]


def test_check_accepts_unknowns_during_preview(provider: NetworkVolumeProvider) -> None:
    unknown = pulumi.output.Unknown()
    result = provider.check({}, inputs() | {"size": unknown, "dataCenterId": unknown})
    assert result.failures == []
    diff = provider.diff("vol1", state(inputs()), inputs() | {"dataCenterId": unknown})
    assert diff.changes is True
    assert diff.replaces == ["dataCenterId"]


def test_drift_after_an_out_of_band_change(provider: NetworkVolumeProvider, emulator: RunPodEmulator) -> None:
    created = provider.create(inputs())
    emulator.account.volumes[created.id]["name"] = "renamed-in-console"
    refreshed = provider.read(created.id, state(created.outs))
    assert refreshed.outs is not None
    assert refreshed.outs["name"] == "renamed-in-console"
    assert refreshed.inputs == refreshed.outs
    diff = provider.diff(created.id, state(refreshed.outs), inputs())
    assert diff.changes is True
    assert diff.replaces == []
    provider.update(created.id, state(refreshed.outs), inputs())
    assert emulator.account.volumes[created.id]["name"] == "comfy-models"


def test_read_drops_a_volume_deleted_out_of_band(
    provider: NetworkVolumeProvider, emulator: RunPodEmulator
) -> None:
    created = provider.create(inputs())
    del emulator.account.volumes[created.id]
    gone = provider.read(created.id, state(created.outs))
    assert gone.id == ""
    assert gone.outs == {}


def test_create_adopts_after_a_crash_before_the_state_write(
    provider: NetworkVolumeProvider, emulator: RunPodEmulator
) -> None:
    # RunPod applies the create, then the answer is lost (5xx): the client must not re-send the mutation ...
    emulator.inject(Fault(500, operation="CreateNetworkVolume", apply_first=True))
    with pytest.raises(RunPodTransportError) as info:
        provider.create(inputs())
    assert info.value.maybe_applied
    assert len(emulator.account.volumes) == 1
    # ... and the next `pulumi up` adopts the volume instead of creating a second one.
    again = provider.create(inputs())
    assert list(emulator.account.volumes) == [again.id]
    assert emulator.operations().count("CreateNetworkVolume") == 1


def test_create_adopts_a_smaller_existing_volume_and_grows_it(
    provider: NetworkVolumeProvider, emulator: RunPodEmulator
) -> None:
    existing = emulator.account.create_volume({"name": "comfy-models", "size": 20, "dataCenterId": "EU-RO-1"})
    emulator.account.create_volume({"name": "comfy-models", "size": 20, "dataCenterId": "US-KS-2"})
    created = provider.create(inputs(size=50.0))
    assert created.id == existing["id"]
    assert emulator.account.volumes[existing["id"]]["size"] == 50
    assert len(emulator.account.volumes) == 2


def test_create_refuses_to_guess_between_duplicates(
    provider: NetworkVolumeProvider, emulator: RunPodEmulator
) -> None:
    for _ in range(2):
        emulator.account.create_volume({"name": "comfy-models", "size": 20, "dataCenterId": "EU-RO-1"})
    with pytest.raises(RuntimeError, match="several RunPod volumes"):
        provider.create(inputs())


def test_delete_of_a_missing_volume_succeeds(
    provider: NetworkVolumeProvider, emulator: RunPodEmulator
) -> None:
    provider.delete("vol-gone", state(inputs()))
    assert emulator.operations() == ["DeleteNetworkVolume"]


def test_429_and_5xx_are_retried(provider: NetworkVolumeProvider, emulator: RunPodEmulator) -> None:
    emulator.inject(
        Fault(429, operation="ListNetworkVolumes"),
        Fault(503, operation="ListNetworkVolumes"),
        Fault(429, operation="CreateNetworkVolume", retry_after=0),
    )
    created = provider.create(inputs())
    assert created.id in emulator.account.volumes
    assert [r.status for r in emulator.requests] == [429, 503, 200, 429, 200]


def test_graphql_errors_are_raised(provider: NetworkVolumeProvider, emulator: RunPodEmulator) -> None:
    emulator.inject(Fault(200, message="Data center is out of capacity", operation="CreateNetworkVolume"))
    with pytest.raises(RunPodAPIError, match=r"CreateNetworkVolume failed \(HTTP 200\): Data center is out"):
        provider.create(inputs())


def test_rule_errors_from_runpod_are_raised(provider: NetworkVolumeProvider) -> None:
    with pytest.raises(RunPodAPIError, match="does not support network volumes"):
        provider.create(inputs(dc="XX-NOWHERE-1"))


def test_api_key_from_config_env_fallback_and_never_in_state(
    emulator: RunPodEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    unconfigured = make_provider(None)
    with pytest.raises(RuntimeError, match="runpodApiKey"):
        unconfigured.create(inputs())
    monkeypatch.setenv("RUNPOD_API_KEY", emulator.api_key)
    created = unconfigured.create(inputs())
    assert emulator.api_key not in repr(created.outs)

    configured = make_provider(emulator.api_key)
    assert emulator.api_key not in repr(configured)
    assert emulator.api_key.encode() not in dill.dumps(configured, recurse=True)


def test_a_wrong_key_is_an_api_error(emulator: RunPodEmulator) -> None:
    with pytest.raises(RunPodAPIError, match="HTTP 401"):
        make_provider("wrong-key").create(inputs())
