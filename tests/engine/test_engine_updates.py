"""Changes a user makes to a deployed stack, under the real engine (issue 11: point 5, registry auth)."""

from __future__ import annotations

import pytest

from tests.engine.pulumi_cli import NEW_IMAGE, PulumiStack

pytestmark = pytest.mark.timeout(900)


def test_config_secret_env_and_new_digest_update_in_place(stack: PulumiStack, api_key: str) -> None:
    """5. workersMax, a secret templateEnv value, a new image digest: updated in place, nothing replaced."""
    account = stack.emulator.account
    stack.init(api_key, workersMax="3")
    stack.run("up", "--yes")
    (volume_id,) = account.volumes
    (template_id,) = account.templates
    (endpoint_id,) = account.endpoints
    version = account.endpoints[endpoint_id]["version"]

    token = "hf_SECRET" + api_key[-8:]
    stack.set(workersMax="5", imageRef=NEW_IMAGE)
    stack.run("config", "set", "--secret", "--path", "templateEnv.HF_TOKEN", token)
    stack.run("up", "--yes")

    changes = stack.last_changes()
    assert changes.get("update", 0) >= 2, changes
    replaced = {"create", "delete", "replace", "create-replacement", "delete-replaced"}
    assert not replaced & set(changes), changes
    assert (set(account.volumes), set(account.templates), set(account.endpoints)) == (
        {volume_id},
        {template_id},
        {endpoint_id},
    )
    template = account.templates[template_id]
    assert template["imageName"] == NEW_IMAGE
    assert {"key": "HF_TOKEN", "value": token} in template["env"]
    endpoint = account.endpoints[endpoint_id]
    assert endpoint["workersMax"] == 5
    assert endpoint["version"] > version  # saved again: RunPod rolls the workers onto the new template
    assert token not in stack.export()
    assert all(token not in output for output in stack.outputs)


def test_registry_credential_from_secret_config(stack: PulumiStack, api_key: str) -> None:
    """registryUsername + secret registryPassword: Pulumi creates the credential and wires it in."""
    account = stack.emulator.account
    password = "ghp_" + api_key[-16:]
    stack.init(api_key, registryUsername="octocat")
    stack.run("config", "set", "--secret", "registryPassword", password)
    stack.run("up", "--yes")

    (auth,) = account.registry_auths.values()
    assert (auth["username"], auth["password"]) == ("octocat", password)
    (template,) = account.templates.values()
    assert template["containerRegistryAuthId"] == auth["id"]
    assert password not in stack.export()
    for path in [*stack.state_files(), stack.config_file]:
        assert password not in path.read_text(errors="replace"), path
    assert all(password not in output for output in stack.outputs)

    stack.run("destroy", "--exclude-protected", "--yes")
    assert not account.registry_auths and not account.templates and not account.endpoints
