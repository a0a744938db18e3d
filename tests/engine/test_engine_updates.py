"""Changes a user makes to a deployed stack, under the real engine (issue 11: point 5, registry auth)."""

from __future__ import annotations

import pytest

from tests.engine.pulumi_cli import NEW_IMAGE, PulumiStack

pytestmark = pytest.mark.timeout(900)


def test_config_secret_env_and_new_digest_update_in_place(stack: PulumiStack, api_key: str) -> None:
    """5. workersMax, a secret templateEnv value, a new image digest: updated in place, nothing replaced, and
    the endpoint rolls its workers onto them (GraphQL: saved again; REST: its PATCH makes a new release)."""
    runpod = stack.backend
    stack.init(api_key, workersMax="3")
    stack.run("up", "--yes")
    (volume_id,) = runpod.volumes()
    (template_id,) = runpod.templates()
    (endpoint_id,) = runpod.endpoint_ids()
    version = runpod.endpoint_version(endpoint_id)

    token = "hf_SECRET" + api_key[-8:]
    stack.set(workersMax="5", imageRef=NEW_IMAGE)
    stack.run("config", "set", "--secret", "--path", "templateEnv.HF_TOKEN", token)
    sent = len(runpod.emulator.requests)
    stack.run("up", "--yes")

    changes = stack.last_changes()
    assert changes.get("update", 0) >= 2, changes
    replaced = {"create", "delete", "replace", "create-replacement", "delete-replaced"}
    assert not replaced & set(changes), changes
    assert (set(runpod.volumes()), set(runpod.templates()), set(runpod.endpoint_ids())) == (
        {volume_id},
        {template_id},
        {endpoint_id},
    )
    assert runpod.templates()[template_id] == NEW_IMAGE
    assert runpod.template_env(template_id)["HF_TOKEN"] == token
    image, env = runpod.running_container(endpoint_id)  # what a new worker starts
    assert (image, env["HF_TOKEN"]) == (NEW_IMAGE, token)
    assert runpod.live_endpoint(endpoint_id)["workersMax"] == 5
    assert runpod.endpoint_version(endpoint_id) > version  # RunPod rolls the workers onto the new settings
    if runpod.rest:
        writes = [(r.method, r.operation) for r in runpod.emulator.requests[sent:] if r.method != "GET"]
        assert ("PATCH", "updateEndpoint") in writes and all(m == "PATCH" for m, _ in writes), writes
    assert token not in stack.export()
    assert all(token not in output for output in stack.outputs)


def test_registry_credential_from_secret_config(stack: PulumiStack, api_key: str) -> None:
    """registryUsername + secret registryPassword: Pulumi creates the credential and wires it in."""
    runpod = stack.backend
    password = "ghp_" + api_key[-16:]
    stack.init(api_key, registryUsername="octocat")
    stack.run("config", "set", "--secret", "registryPassword", password)
    stack.run("up", "--yes")

    (auth,) = runpod.registries().values()
    assert (auth["username"], auth["password"]) == ("octocat", password)
    (template_id,) = runpod.templates()
    assert runpod.template_registry(template_id) == auth["id"]
    if runpod.rest:  # the endpoint pulls with its own copy of the container settings
        (endpoint,) = runpod.account.endpoints.values()
        assert endpoint["registry"] == auth["id"]
    assert password not in stack.export()
    for path in [*stack.state_files(), stack.config_file]:
        assert password not in path.read_text(errors="replace"), path
    assert all(password not in output for output in stack.outputs)

    assert password not in runpod.recorded().replace(f'"password": "{password}"', "")  # only where it goes
    stack.run("destroy", "--exclude-protected", "--yes")
    assert not runpod.registries() and not runpod.templates() and not runpod.endpoint_ids()
