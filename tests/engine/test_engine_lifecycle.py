"""`pulumi preview/up/refresh/destroy` of the project under the real engine (issue 11, points 1-4, 6, 8).

One stack walks the life a user's stack has: preview, first up, a no-op up, drift made in RunPod behind
Pulumi's back, refresh, the up that restores it, and destroy with the protected volume. Every test runs over
both RunPod transports (``[graphql]``, ``[rest]``: the default a new stack gets).
"""

from __future__ import annotations

import json
import re

import pytest

from tests.engine.pulumi_cli import IMAGE, REPO, PulumiStack

pytestmark = pytest.mark.timeout(900)


def test_preview_up_noop_drift_destroy(stack: PulumiStack, api_key: str) -> None:
    runpod = stack.backend
    stack.init(api_key, workersMax="3")
    stack.run("config", "set", "--path", "templateEnv.OUTPUT_MODE", "base64")

    # 1. preview shows the creates and changes nothing on RunPod.
    preview = stack.run("preview")
    for resource in ("NetworkVolume models-volume", "Template comfy-template", "Endpoint comfy-endpoint"):
        assert f"+  pulumi-python:dynamic/runpod:{resource} create" in preview.stdout, preview.stdout
    assert "+ 5 to create" in preview.stdout
    assert runpod.writes() == []
    assert not runpod.volumes() and not runpod.templates() and not runpod.endpoint_ids()

    # 2. up creates the volume, template and endpoint; the outputs carry their ids and the job-API URL.
    stack.run("up", "--yes")
    assert len(runpod.volumes()) == len(runpod.templates()) == len(runpod.endpoint_ids()) == 1
    (volume_id,) = runpod.volumes()
    (template_id,) = runpod.templates()
    (endpoint_id,) = runpod.endpoint_ids()
    outputs = stack.outputs_json()
    assert outputs["volumeId"] == volume_id
    assert outputs["templateId"] == template_id
    assert outputs["endpointId"] == endpoint_id
    assert outputs["endpointUrl"] == f"https://api.runpod.ai/v2/{endpoint_id}"
    assert outputs["imageRef"] == IMAGE
    assert runpod.templates()[template_id] == IMAGE
    assert runpod.endpoint_template(endpoint_id) == template_id
    assert runpod.running_container(endpoint_id) == (IMAGE, runpod.template_env(template_id))
    assert runpod.template_env(template_id)["OUTPUT_MODE"] == "base64"
    assert runpod.live_endpoint(endpoint_id)["volumes"] == {volume_id}

    # 3. a second up changes nothing: no mutation sent, the engine counts only "same".
    before = len(runpod.writes())
    stack.run("up", "--yes")
    assert runpod.writes()[before:] == []
    assert set(stack.last_changes()) == {"same"}

    # 4. drift made in RunPod shows in refresh; the next up restores the declared state in place.
    with runpod.account.lock:
        runpod.scale_down(endpoint_id, 0)  # RunPod's idle scale-down
        runpod.set_template_env(template_id, "OUTPUT_MODE", "s3")  # edited in the console
        if runpod.rest:  # the endpoint's own copy of the env, what its workers start with
            runpod.account.endpoints[endpoint_id]["env"]["OUTPUT_MODE"] = "s3"
            runpod.account.endpoints[endpoint_id]["image"] = IMAGE.replace("a" * 64, "c" * 64)
    refresh = stack.run("refresh", "--yes")
    diffs = {  # resource type -> the fields its refresh line names: [diff: +executionTimeoutMs~workersMax]
        line.split("dynamic/runpod:")[1].split()[0]: set(re.findall(r"\w+", line.split("[diff:")[1]))
        for line in refresh.stdout.splitlines()
        if " updated " in line and "[diff:" in line
    }
    assert "workersMax" in diffs["Endpoint"] and diffs["Template"] == {"env"}, refresh.stdout
    if runpod.rest:
        assert {"env", "imageName"} <= diffs["Endpoint"], refresh.stdout
    assert set(stack.last_changes()) >= {"update"}
    stack.run("up", "--yes")
    changes = stack.last_changes()
    assert changes.get("update", 0) >= 2 and not {"create", "delete", "replace"} & set(changes)
    assert runpod.live_endpoint(endpoint_id)["workersMax"] == 3
    assert runpod.template_env(template_id)["OUTPUT_MODE"] == "base64"
    assert runpod.running_container(endpoint_id) == (IMAGE, {"OUTPUT_MODE": "base64"})
    assert set(runpod.endpoint_ids()) == {endpoint_id} and set(runpod.templates()) == {template_id}
    stack.run("up", "--yes")  # restored: what refresh read back (e.g. RunPod's defaults) is no diff
    assert set(stack.last_changes()) == {"same"}

    # 8. destroy stops at the protected volume; --exclude-protected removes endpoint, then template.
    refused = stack.run("destroy", "--yes", check=False)
    assert refused.returncode != 0
    assert "protected" in refused.stdout + refused.stderr
    assert runpod.endpoint_ids() and runpod.templates() and runpod.volumes()
    before = len(runpod.writes())
    stack.run("destroy", "--exclude-protected", "--yes")
    assert not runpod.endpoint_ids() and not runpod.templates()
    assert set(runpod.volumes()) == {volume_id}
    deletes = [f for f in runpod.writes()[before:] if f.startswith("delete")]
    # endpoint first; the template after it (GraphQL: retried while RunPod still refuses it, as it does for a
    # while; REST: the endpoint's delete took its bound template, so the template's delete finds it gone: 404)
    assert deletes[0] == "deleteEndpoint" and set(deletes[1:]) == {"deleteTemplate"}
    if runpod.rest:
        assert [r.status for r in runpod.emulator.requests if r.operation == "deleteTemplate"] == [404]


def test_api_key_only_from_secret_stack_config(stack: PulumiStack, api_key: str) -> None:
    """6. `pulumi config set --secret runpodApiKey` alone reaches the providers, and stays secret."""
    stack.init(api_key)
    env = stack.env()
    assert "RUNPOD_API_KEY" not in env
    stack.run("up", "--yes")
    stack.run("refresh", "--yes")
    assert stack.backend.endpoint_ids()  # every request carried the key (wrong key: 401, up fails)
    assert 401 not in stack.backend.statuses()

    assert api_key not in stack.export()
    for path in [*stack.state_files(), stack.config_file]:
        assert api_key not in path.read_text(errors="replace"), path
    assert all(api_key not in output for output in stack.outputs)
    assert api_key not in stack.backend.recorded()  # the emulator's log: no key in a URL, body or answer


@pytest.mark.parametrize("transport", ["rest"])  # which plugins the engine needs does not depend on the API
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
