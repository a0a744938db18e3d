"""`pulumi preview/up/refresh/destroy` of the project under the real engine (issue 11, points 1-4, 6, 8).

One stack walks the life a user's stack has: preview, first up, a no-op up, drift made in RunPod behind
Pulumi's back, refresh, the up that restores it, and destroy with the protected volume.
"""

from __future__ import annotations

import json

import pytest

from tests.engine.pulumi_cli import IMAGE, REPO, PulumiStack

pytestmark = pytest.mark.timeout(900)


def mutations(stack: PulumiStack) -> list[str]:
    return [f for r in stack.emulator.requests if r.mutation for f in r.fields]


def test_preview_up_noop_drift_destroy(stack: PulumiStack, api_key: str) -> None:
    account = stack.emulator.account
    stack.init(api_key, workersMax="3")
    stack.run("config", "set", "--path", "templateEnv.OUTPUT_MODE", "base64")

    # 1. preview shows the creates and changes nothing on RunPod.
    preview = stack.run("preview")
    for resource in ("NetworkVolume models-volume", "Template comfy-template", "Endpoint comfy-endpoint"):
        assert f"+  pulumi-python:dynamic/runpod:{resource} create" in preview.stdout, preview.stdout
    assert "+ 5 to create" in preview.stdout
    assert mutations(stack) == []
    assert not account.volumes and not account.templates and not account.endpoints

    # 2. up creates the volume, template and endpoint; the outputs carry their ids and the job-API URL.
    stack.run("up", "--yes")
    assert len(account.volumes) == len(account.templates) == len(account.endpoints) == 1
    (volume_id,) = account.volumes
    (template_id,) = account.templates
    (endpoint_id,) = account.endpoints
    outputs = stack.outputs_json()
    assert outputs["volumeId"] == volume_id
    assert outputs["templateId"] == template_id
    assert outputs["endpointId"] == endpoint_id
    assert outputs["endpointUrl"] == f"https://api.runpod.ai/v2/{endpoint_id}"
    assert outputs["imageRef"] == IMAGE
    assert account.templates[template_id]["imageName"] == IMAGE
    assert account.endpoints[endpoint_id]["templateId"] == template_id

    # 3. a second up changes nothing: no mutation sent, the engine counts only "same".
    before = len(mutations(stack))
    stack.run("up", "--yes")
    assert mutations(stack)[before:] == []
    assert set(stack.last_changes()) == {"same"}

    # 4. drift made in RunPod shows in refresh; the next up restores the declared state in place.
    with account.lock:
        account.endpoints[endpoint_id]["workersMax"] = 0  # RunPod's idle scale-down
        env = account.templates[template_id]["env"]
        for item in env:
            if item["key"] == "OUTPUT_MODE":
                item["value"] = "s3"
    refresh = stack.run("refresh", "--yes")
    assert "[diff: ~workersMax]" in refresh.stdout and "Template comfy-template updated" in refresh.stdout
    assert set(stack.last_changes()) >= {"update"}
    stack.run("up", "--yes")
    changes = stack.last_changes()
    assert changes.get("update", 0) >= 2 and not {"create", "delete", "replace"} & set(changes)
    assert account.endpoints[endpoint_id]["workersMax"] == 3
    assert {"key": "OUTPUT_MODE", "value": "base64"} in account.templates[template_id]["env"]
    assert set(account.endpoints) == {endpoint_id} and set(account.templates) == {template_id}

    # 8. destroy stops at the protected volume; --exclude-protected removes endpoint, then template.
    refused = stack.run("destroy", "--yes", check=False)
    assert refused.returncode != 0
    assert "protected" in refused.stdout + refused.stderr
    assert account.endpoints and account.templates and account.volumes
    before = len(mutations(stack))
    stack.run("destroy", "--exclude-protected", "--yes")
    assert not account.endpoints and not account.templates
    assert set(account.volumes) == {volume_id}
    deletes = [f for f in mutations(stack)[before:] if f.startswith("delete")]
    # endpoint first; the template after it (retried while RunPod still refuses it, as it does for a while)
    assert deletes[0] == "deleteEndpoint" and set(deletes[1:]) == {"deleteTemplate"}


def test_api_key_only_from_secret_stack_config(stack: PulumiStack, api_key: str) -> None:
    """6. `pulumi config set --secret runpodApiKey` alone reaches the providers, and stays secret."""
    stack.init(api_key)
    env = stack.env()
    assert "RUNPOD_API_KEY" not in env
    stack.run("up", "--yes")
    stack.run("refresh", "--yes")
    assert stack.emulator.account.endpoints  # every request carried the key (wrong key: 401, up fails)
    assert all(r.status != 401 for r in stack.emulator.requests)

    assert api_key not in stack.export()
    for path in [*stack.state_files(), stack.config_file]:
        assert api_key not in path.read_text(errors="replace"), path
    assert all(api_key not in output for output in stack.outputs)
    assert api_key not in json.dumps([r.variables for r in stack.emulator.requests])


def test_prebuilt_image_needs_no_docker_plugin(stack: PulumiStack, api_key: str) -> None:
    """pulumi-docker is installed in the venv, but with imageRef set nothing needs its plugin.

    The engine is told not to download plugins (no network here): up succeeds without
    pulumi-resource-docker, and the stack holds no Docker provider or image.
    """
    # precondition: the venv's pulumi-docker declares its plugin, so the engine is told it is required
    assert list((REPO / ".venv" / "lib").glob("python*/site-packages/pulumi_docker/pulumi-plugin.json"))
    stack.init(api_key)
    stack.run("up", "--yes")
    plugins = stack.home / "pulumi-home" / "plugins"
    assert not list(plugins.glob("resource-docker*"))  # (glob of a missing folder: empty)
    exported = json.loads(stack.export())
    types = {r["type"] for r in exported["deployment"]["resources"]}
    assert not any("docker" in t for t in types), types
    assert "pulumi:providers:pulumi-python" in types  # the dynamic providers ran
