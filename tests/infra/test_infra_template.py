"""The Template dynamic provider against the RunPod emulator."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("graphql")
pytest.importorskip("pulumi")

from infra.providers.template import TemplateProvider
from infra.runpod_graphql import RunPodAPIError
from tests.infra_support import ProviderLoader
from tests.runpod_emulator import Fault, RunPodEmulator


@pytest.fixture
def provider(load_provider: ProviderLoader) -> TemplateProvider:
    return load_provider(TemplateProvider)


def inputs(**extra: Any) -> dict[str, Any]:
    base = {"name": "comfy-worker", "imageName": "repo/comfy:1", "containerDiskInGb": 30.0, "dockerArgs": ""}
    return {**base, "env": {"B": "2", "A": "1"}, "__provider": "opaque", **extra}


def state(outs: dict[str, Any] | None) -> dict[str, Any]:
    return {**(outs or {}), "__provider": "opaque"}


def test_lifecycle_sends_the_full_template(provider: TemplateProvider, emulator: RunPodEmulator) -> None:
    checked = provider.check({}, inputs())
    assert checked.failures == []
    created = provider.create({**checked.inputs, "__provider": "x"})
    stored = emulator.account.templates[created.id]
    assert stored["env"] == [{"key": "A", "value": "1"}, {"key": "B", "value": "2"}]
    assert (stored["volumeInGb"], stored["isServerless"], stored["containerDiskInGb"]) == (0, True, 30)
    assert "containerRegistryAuthId" not in emulator.requests[-1].variables["input"]  # omitted, not null
    assert created.outs == {
        "name": "comfy-worker",
        "imageName": "repo/comfy:1",
        "containerDiskInGb": 30,
        "dockerArgs": "",
        "env": {"A": "1", "B": "2"},
    }

    assert provider.diff(created.id, state(created.outs), inputs()).changes is False
    renamed = inputs(name="comfy-worker-2", imageName="repo/comfy:2")
    diff = provider.diff(created.id, state(created.outs), renamed)
    assert (diff.changes, diff.replaces) == (True, [])
    updated = provider.update(created.id, state(created.outs), renamed)
    assert updated.outs is not None
    assert emulator.account.templates[created.id]["imageName"] == "repo/comfy:2"

    read = provider.read(created.id, state(updated.outs))
    assert read.outs == updated.outs
    provider.delete(created.id, state(updated.outs))
    assert emulator.account.templates == {}
    assert provider.read(created.id, state(updated.outs)).id == ""
    provider.delete(created.id, state(updated.outs))  # not found = success


def test_create_adopts_a_template_with_the_same_name(
    provider: TemplateProvider, emulator: RunPodEmulator
) -> None:
    first = provider.create(inputs(imageName="repo/comfy:old"))
    again = provider.create(inputs())
    assert again.id == first.id
    assert emulator.account.templates[first.id]["imageName"] == "repo/comfy:1"


def test_drift_is_detected(provider: TemplateProvider, emulator: RunPodEmulator) -> None:
    created = provider.create(inputs())
    emulator.account.templates[created.id]["env"] = [{"key": "A", "value": "changed"}]
    read = provider.read(created.id, state(created.outs))
    assert read.outs is not None
    assert read.outs["env"] == {"A": "changed"}
    assert provider.diff(created.id, state(read.outs), inputs()).changes is True


@pytest.mark.parametrize(
    ("news", "prop"),
    [
        ({"name": "ab"}, "name"),
        ({"imageName": None}, "imageName"),
        ({"containerDiskInGb": 2.5}, "containerDiskInGb"),
        ({"env": {"A": 1}}, "env"),
        ({"env": {"HF TOKEN": "x"}}, "env"),
        ({"env": {"1ST": "x"}}, "env"),
    ],
)
def test_check_rejects_bad_inputs(provider: TemplateProvider, news: dict[str, Any], prop: str) -> None:
    assert [f.property for f in provider.check({}, inputs(**news)).failures] == [prop]


def test_delete_waits_while_the_template_is_in_use(
    provider: TemplateProvider, emulator: RunPodEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(TemplateProvider, "delete_poll_s", 0.05)
    created = provider.create(inputs())
    emulator.account.template_last_used[created.id] = emulator.account.clock()
    emulator.account.template_grace_s = 0.3
    monkeypatch.setattr(TemplateProvider, "delete_wait_s", 5.0)
    provider.delete(created.id, state(created.outs))
    assert emulator.account.templates == {}
    assert emulator.operations().count("DeleteTemplate") > 1


def test_delete_gives_up_after_the_wait(
    provider: TemplateProvider, emulator: RunPodEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(TemplateProvider, "delete_poll_s", 0.01)
    monkeypatch.setattr(TemplateProvider, "delete_wait_s", 0.05)
    created = provider.create(inputs())
    emulator.account.save_endpoint(
        {"name": "comfy", "templateId": created.id, "idleTimeout": 5, "scalerValue": 1}
    )
    with pytest.raises(RunPodAPIError, match="in use"):
        provider.delete(created.id, state(created.outs))


SECRET = "hf_secret-token-0123456789"


def test_env_values_are_redacted_from_runpod_errors(
    provider: TemplateProvider, emulator: RunPodEmulator
) -> None:
    # A GraphQL server may echo the variables it refused; the secret value must not reach the CLI's output.
    news = inputs(env={"HF_TOKEN": SECRET})
    emulator.inject(
        Fault(200, message=f"invalid env value {SECRET!r} for HF_TOKEN", operation="SaveTemplate")
    )
    with pytest.raises(RunPodAPIError) as info:
        provider.create(news)
    assert SECRET not in str(info.value)
    assert "invalid env value '***' for HF_TOKEN" in str(info.value)
    created = provider.create(news)
    emulator.inject(Fault(200, message=f"bad {SECRET}", operation="SaveTemplate"))
    with pytest.raises(RunPodAPIError) as info:
        provider.update(created.id, state(created.outs), news)
    assert SECRET not in str(info.value)


def test_a_check_failure_names_the_variable_never_the_value(provider: TemplateProvider) -> None:
    [failure] = provider.check({}, inputs(env={"HF TOKEN": SECRET})).failures
    assert "'HF TOKEN'" in failure.reason
    assert SECRET not in failure.reason
