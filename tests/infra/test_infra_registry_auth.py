"""The RegistryAuth dynamic provider against the RunPod emulator (no Pulumi CLI, no RunPod)."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("graphql")
pulumi = pytest.importorskip("pulumi")

from infra.providers.registry_auth import RegistryAuthProvider, password_digest, password_matches  # noqa: E402
from infra.runpod_graphql import RunPodAPIError  # noqa: E402
from tests.infra_support import ProviderLoader  # noqa: E402
from tests.runpod_emulator import Fault, RunPodEmulator  # noqa: E402

PASSWORD = "ghp_registry-password-42"


@pytest.fixture
def provider(load_provider: ProviderLoader) -> RegistryAuthProvider:
    return load_provider(RegistryAuthProvider)


def inputs(**extra: Any) -> dict[str, Any]:
    return {"name": "ghcr-acme", "username": "acme", "password": PASSWORD, "__provider": "opaque"} | extra


def test_lifecycle(provider: RegistryAuthProvider, emulator: RunPodEmulator) -> None:
    checked = provider.check({}, inputs())
    assert checked.failures == []
    created = provider.create(checked.inputs)
    stored = emulator.account.registry_auths[created.id]
    assert (stored["name"], stored["username"], stored["password"]) == ("ghcr-acme", "acme", PASSWORD)
    # Outputs hold a salted digest of the password, never the password.
    assert set(created.outs) == {"name", "username", "passwordDigest"}
    assert (created.outs["name"], created.outs["username"]) == ("ghcr-acme", "acme")
    assert PASSWORD not in repr(created.outs)
    assert password_matches(PASSWORD, created.outs["passwordDigest"])

    read = provider.read(created.id, {**created.outs})
    assert read.id == created.id
    assert read.outs == created.outs  # username/password cannot be read back: the stored ones are kept
    assert read.inputs is None  # the stored inputs (with the secret password) stay as they are
    assert provider.diff(created.id, {**created.outs}, inputs()).changes is False

    rotated = inputs(password="new-password")
    diff = provider.diff(created.id, {**created.outs}, rotated)
    assert (diff.changes, diff.replaces) == (True, [])
    updated = provider.update(created.id, {**created.outs}, rotated)
    assert emulator.account.registry_auths[created.id]["password"] == "new-password"
    assert updated.outs is not None and "new-password" not in repr(updated.outs)
    assert provider.diff(created.id, {**updated.outs}, rotated).changes is False
    assert provider.diff(created.id, {**updated.outs}, inputs()).changes is True

    renamed = provider.diff(created.id, {**created.outs}, inputs(name="ghcr-other"))
    assert renamed.replaces == ["name"]

    provider.delete(created.id, {**created.outs})
    assert emulator.account.registry_auths == {}
    assert provider.read(created.id, {**created.outs}).id == ""
    provider.delete(created.id, {**created.outs})  # not found: success


def test_create_adopts_a_credential_with_the_same_name(
    provider: RegistryAuthProvider, emulator: RunPodEmulator
) -> None:
    existing = emulator.account.save_registry_auth(
        {"name": "ghcr-acme", "username": "old", "password": "old"}
    )
    created = provider.create(inputs())
    assert created.id == existing["id"]
    assert emulator.account.registry_auths[created.id]["password"] == PASSWORD


def test_the_password_is_never_in_an_error_or_log_line(provider: RegistryAuthProvider) -> None:
    with pytest.raises(RunPodAPIError) as info:
        provider.update("cra-missing", {}, inputs())
    assert PASSWORD not in str(info.value)


def test_delete_is_refused_while_a_template_uses_it(
    provider: RegistryAuthProvider, emulator: RunPodEmulator
) -> None:
    created = provider.create(inputs())
    emulator.account.save_template(
        {"name": "comfy", "imageName": "img", "containerRegistryAuthId": created.id}
    )
    with pytest.raises(RunPodAPIError, match="in use"):
        provider.delete(created.id, {})


@pytest.mark.parametrize(("news", "prop"), [(inputs(password=""), "password"), (inputs(name="ab"), "name")])
def test_check_rejects_bad_inputs(provider: RegistryAuthProvider, news: dict[str, Any], prop: str) -> None:
    assert [f.property for f in provider.check({}, news).failures] == [prop]


def test_the_password_digest_is_salted_and_checked_in_constant_time() -> None:
    first, second = password_digest(PASSWORD), password_digest(PASSWORD)
    assert first != second  # a fresh salt each time: equal passwords do not give equal digests
    assert password_matches(PASSWORD, first) and password_matches(PASSWORD, second)
    assert not password_matches("other", first)
    assert not password_matches(PASSWORD, "garbage")
    assert PASSWORD not in first


def test_state_from_before_the_digest_still_diffs_correctly(provider: RegistryAuthProvider) -> None:
    legacy = {"name": "ghcr-acme", "username": "acme", "password": PASSWORD}
    assert provider.diff("cra1", legacy, inputs()).changes is False
    assert provider.diff("cra1", legacy, inputs(password="rotated")).changes is True


def test_an_unknown_password_during_preview_is_a_change(provider: RegistryAuthProvider) -> None:
    created = provider.create(inputs())
    news = inputs(password=pulumi.output.Unknown())
    assert provider.diff(created.id, {**created.outs}, news).changes is True


def test_the_password_is_redacted_from_runpod_errors(
    provider: RegistryAuthProvider, emulator: RunPodEmulator
) -> None:
    emulator.inject(Fault(200, message=f"bad credentials {PASSWORD}", operation="SaveRegistryAuth"))
    with pytest.raises(RunPodAPIError) as info:
        provider.create(inputs())
    assert PASSWORD not in str(info.value)
