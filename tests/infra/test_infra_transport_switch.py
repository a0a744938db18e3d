"""Switching a stack from GraphQL to REST v2 (`pulumi config set runpodApi rest`) replaces and deletes
nothing.

The stack is the program's own: its resources' inputs are what ``main()`` declares under Pulumi's mocks
(registry credential, volume, template, endpoint, with a secret env). They are created over GraphQL against
the GraphQL emulator by the providers as the engine loads them; the REST emulator then takes over that account
(``Account.import_graphql``: one RunPod backend behind both APIs, ids kept), and the providers, configured
with ``runpodApi: rest``, run preview (check + diff), refresh (read) and up. An engine test can drive the same
switch with ``Backend.env``/``Backend.config`` (tests/infra_support.py).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

pytest.importorskip("graphql")
pytest.importorskip("openapi_core")
pulumi = pytest.importorskip("pulumi")

from infra.program import JOB_API_BASE, main  # noqa: E402
from infra.providers.endpoint import CONTAINER_KEYS, EndpointProvider  # noqa: E402
from infra.providers.network_volume import NetworkVolumeProvider  # noqa: E402
from infra.providers.registry_auth import RegistryAuthProvider  # noqa: E402
from infra.providers.template import TemplateProvider  # noqa: E402
from tests.infra_support import Mocks, as_the_engine_loads, configure_with, take_over  # noqa: E402
from tests.runpod_emulator import RunPodEmulator  # noqa: E402
from tests.runpod_rest_emulator import RunPodRESTEmulator  # noqa: E402

SIG = pulumi.runtime.rpc._special_sig_key
NEW_IMAGE = "ghcr.io/acme/comfy-runpod@sha256:" + "cd" * 32
# In dependency order: Pulumi resource name, type, provider.
RESOURCES = (
    ("registry-auth", "RegistryAuth", RegistryAuthProvider),
    ("models-volume", "NetworkVolume", NetworkVolumeProvider),
    ("comfy-template", "Template", TemplateProvider),
    ("comfy-endpoint", "Endpoint", EndpointProvider),
)


def _plain(value: Any, ids: dict[str, str]) -> Any:
    """Secrets unwrapped (the engine hands providers plain values) and the mocks' ids made the real ones."""
    if isinstance(value, dict):
        if SIG in value:
            return _plain(value.get("value"), ids)
        return {k: _plain(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, ids) for v in value]
    return ids.get(value, value) if isinstance(value, str) else value


@pytest.fixture
def declared(mocks: Mocks) -> dict[str, dict[str, Any]]:
    """Resource name -> the inputs the program declares (a private image, a secret env)."""
    env = {"HF_TOKEN": "hf_secret-token-0123456789", "OUTPUT_MODE": "s3"}
    configure_with(
        {"registryUsername": "acme", "registryPassword": "pw-0123456789", "templateEnv": json.dumps(env)},
        ("registryPassword", "templateEnv"),
    )

    @pulumi.runtime.test
    def run() -> Any:
        main()
        return pulumi.runtime.get_root_resource().outputs["endpointId"]  # type: ignore[union-attr]

    run()
    return {a.name: dict(a.inputs) for a in mocks.created if a.typ.startswith("pulumi-python:dynamic/")}


def _load(cls: type[Any], key: str, transport: str) -> Any:
    return as_the_engine_loads(cls(), key, transport)


Stack = dict[str, tuple[str, dict[str, Any], dict[str, Any]]]


def _pulumi_up(declared: dict[str, dict[str, Any]], key: str, transport: str) -> tuple[dict[str, str], Stack]:
    """``pulumi up`` of every resource over ``transport``: the ids, and per resource (id, inputs, state)."""
    ids: dict[str, str] = {}
    stack: Stack = {}
    for name, _, cls in RESOURCES:
        provider = _load(cls, key, transport)
        checked = provider.check({}, _plain(declared[name], ids))
        assert checked.failures == [], name
        created = provider.create(checked.inputs)
        ids[f"{name}-id"] = created.id
        stack[name] = (created.id, checked.inputs, {**created.outs, "__provider": "old-pickle"})
    return ids, stack


def test_a_graphql_stack_switched_to_rest_keeps_every_resource_and_id(
    declared: dict[str, dict[str, Any]],
    emulator: RunPodEmulator,
    rest_emulator: RunPodRESTEmulator,
) -> None:
    # `pulumi up` over GraphQL.
    ids, stack = _pulumi_up(declared, emulator.api_key, "graphql")
    endpoint_id = stack["comfy-endpoint"][0]
    volume_id = stack["models-volume"][0]

    # `pulumi config set runpodApi rest`: the same account, seen over REST.
    take_over(rest_emulator, emulator)
    emulator.requests.clear()

    # `pulumi preview`: check and diff every resource: nothing to replace, nothing to change.
    for name, _, cls in RESOURCES:
        resource_id, olds, outs = stack[name]
        provider = _load(cls, emulator.api_key, "rest")
        checked = provider.check(olds, _plain(declared[name], ids))
        assert checked.failures == [], name
        diff = provider.diff(resource_id, outs, checked.inputs)
        assert (diff.changes, diff.replaces) == (False, []), name

    # `pulumi refresh`, then `pulumi up`: every object found under its id, still no change.
    for name, _, cls in RESOURCES:
        resource_id, olds, outs = stack[name]
        provider = _load(cls, emulator.api_key, "rest")
        read = provider.read(resource_id, outs)
        assert read.id == resource_id, name
        assert set(outs) - {"__provider"} - set(read.outs) == set(), name  # no output lost (templateId)
        assert read.outs.get("templateId") == outs.get("templateId"), name
        diff = provider.diff(resource_id, {**read.outs, "__provider": "x"}, olds)
        assert (diff.changes, diff.replaces) == (False, []), (name, read.outs)

    assert emulator.requests == []  # nothing went to GraphQL any more
    writes = [r for r in rest_emulator.requests if r.method != "GET"]
    assert writes == []  # and nothing was written over REST
    endpoint = rest_emulator.account.endpoints[endpoint_id]
    view = rest_emulator.account._endpoint_view(endpoint)
    assert view["requestUrls"]["run"] == f"{JOB_API_BASE}/{endpoint_id}/run"  # the job-API URL is the same
    assert endpoint["networkVolumes"] == [volume_id]

    # The next image rolls the workers over REST: the endpoint is PATCHed in place (a new release).
    resource_id, olds, outs = stack["comfy-endpoint"]
    provider = _load(EndpointProvider, emulator.api_key, "rest")
    news = provider.check(olds, {**_plain(declared["comfy-endpoint"], ids), "imageName": NEW_IMAGE}).inputs
    diff = provider.diff(resource_id, outs, news)
    assert (diff.changes, diff.replaces) == (True, [])
    updated = provider.update(resource_id, outs, news)
    assert rest_emulator.account.endpoints[endpoint_id]["image"] == NEW_IMAGE
    assert updated.outs is not None and updated.outs["version"] > outs.get("version", 0)
    assert [r.body for r in rest_emulator.requests if r.operation == "updateEndpoint"] == [
        {"image": NEW_IMAGE}
    ]


def test_a_stack_last_updated_by_an_older_program_shows_one_no_op_update_or_none_after_refresh(
    declared: dict[str, dict[str, Any]],
    emulator: RunPodEmulator,
    rest_emulator: RunPodRESTEmulator,
) -> None:
    """State written before the endpoint had container inputs: the GraphQL outputs hold no image or env."""
    ids, stack = _pulumi_up(declared, emulator.api_key, "graphql")
    endpoint_id, _, outs = stack["comfy-endpoint"]
    legacy = {k: v for k, v in outs.items() if k not in CONTAINER_KEYS}
    news = _plain(declared["comfy-endpoint"], ids)
    over_graphql = _load(EndpointProvider, emulator.api_key, "graphql")
    assert over_graphql.diff(endpoint_id, legacy, over_graphql.check(legacy, news).inputs).changes is False

    take_over(rest_emulator, emulator)
    provider = _load(EndpointProvider, emulator.api_key, "rest")
    checked = provider.check(legacy, news).inputs
    diff = provider.diff(endpoint_id, legacy, checked)
    assert (diff.changes, diff.replaces) == (True, [])  # an in-place update that records image and env ...
    version = rest_emulator.account.endpoint_version(endpoint_id)
    updated = provider.update(endpoint_id, legacy, checked)
    assert rest_emulator.account.endpoint_version(endpoint_id) == version  # ... and changes nothing live
    assert provider.diff(endpoint_id, {**updated.outs, "__provider": "x"}, checked).changes is False
    # `pulumi refresh` first records them instead: then no update at all.
    refreshed = provider.read(endpoint_id, legacy)
    assert provider.diff(endpoint_id, {**refreshed.outs, "__provider": "x"}, checked).changes is False


def test_a_rest_stack_switched_back_to_graphql_keeps_every_resource_and_id(
    declared: dict[str, dict[str, Any]],
    emulator: RunPodEmulator,
    rest_emulator: RunPodRESTEmulator,
) -> None:
    ids, stack = _pulumi_up(declared, rest_emulator.api_key, "rest")

    take_over(emulator, rest_emulator)
    rest_emulator.requests.clear()
    for name, _, cls in RESOURCES:
        resource_id, olds, outs = stack[name]
        provider = _load(cls, emulator.api_key, "graphql")
        checked = provider.check(olds, _plain(declared[name], ids))
        diff = provider.diff(resource_id, outs, checked.inputs)
        assert (diff.changes, diff.replaces) == (False, []), name
        read = provider.read(resource_id, outs)
        assert read.id == resource_id, name
        assert read.outs.get("templateId") == outs.get("templateId"), name
        diff = provider.diff(resource_id, {**read.outs, "__provider": "x"}, checked.inputs)
        assert (diff.changes, diff.replaces) == (False, []), (name, read.outs)
    assert rest_emulator.requests == []
    assert [r for r in emulator.requests if r.operation and not r.operation.startswith(("List", "Get"))] == []
