"""The same RunPod objects read over GraphQL and over REST v2 give the providers the same values.

Objects are created over GraphQL exactly as the providers send them (their ``wire`` functions), the REST
emulator takes the account over (one backend, same ids), and both clients read it back. This is what a
stack switching transport sees on its first refresh; every difference is listed here on purpose, so the
provider wiring knows what to bridge.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from infra.providers.endpoint import CONTAINER_KEYS, outs_of, wire
from infra.runpod_graphql import RunPodGraphQL
from infra.runpod_rest import RunPodREST
from tests.runpod_emulator import RunPodEmulator
from tests.runpod_emulator import running_emulator as running_graphql
from tests.runpod_rest_emulator import RunPodRESTEmulator, running_emulator

IMAGE = "ghcr.io/me/comfy-runpod@sha256:" + "f" * 64


@pytest.fixture
def both() -> Iterator[tuple[RunPodEmulator, RunPodRESTEmulator]]:
    for graphql in running_graphql():
        for rest in running_emulator():
            yield graphql, rest


def endpoint_props(template_id: str, volume_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": "comfy",
        "templateId": template_id,
        "gpuIds": ["ADA_24", "AMPERE_48", "-NVIDIA L4"],
        "networkVolumeId": volume_id,
        "volumeDataCenterId": "EU-RO-1",
        "locations": ["EU-RO-1"],
        "gpuCount": 1,
        "workersMin": 0,
        "workersMax": 3,
        "idleTimeout": 5,
        "scalerType": "QUEUE_DELAY",
        "scalerValue": 4,
        "executionTimeoutMs": 600000,
        "flashBootType": "FLASHBOOT",
        "allowedCudaVersions": ["13.0", "12.8"],
        **extra,
    }


def test_a_graphql_stack_reads_the_same_over_rest(both: tuple[RunPodEmulator, RunPodRESTEmulator]) -> None:
    graphql_emulator, rest_emulator = both
    with RunPodGraphQL(graphql_emulator.api_key, url=graphql_emulator.url) as gql:
        volume = gql.create_network_volume(name="comfy-models", size=100, data_center_id="EU-RO-1")
        auth = gql.save_registry_auth(name="ghcr-me", username="robot", password="pw-123456")
        template = gql.save_template(
            {
                "name": "comfy-tpl",
                "imageName": IMAGE,
                "containerDiskInGb": 20,
                "dockerArgs": "",
                "env": [{"key": "LOG", "value": "info"}],
                "volumeInGb": 0,
                "isServerless": True,
                "containerRegistryAuthId": auth["id"],
            }
        )
        props = endpoint_props(template["id"], volume["id"])
        created = gql.save_endpoint(wire(props))
        graphql_view: dict[str, Any] = {
            "volumes": gql.list_network_volumes(),
            "templates": gql.list_templates(),
            "auths": gql.list_registry_auths(),
            "endpoint": gql.get_endpoint(created["id"]),
        }
    rest_emulator.account.import_graphql(graphql_emulator.account)
    rest_emulator.api_key = graphql_emulator.api_key
    with RunPodREST(rest_emulator.api_key, url=rest_emulator.url) as rest:
        volumes = rest.list_network_volumes()
        templates = rest.list_templates()
        auths = rest.list_registry_auths()
        endpoint = rest.get_endpoint(created["id"])
        fresh = rest.create_network_volume(name="other", size=10, data_center_id="EU-RO-1")

    assert [{k: v for k, v in vol.items() if k != "type"} for vol in volumes] == graphql_view["volumes"]
    assert auths == graphql_view["auths"]
    keys = ("id", "name", "imageName", "containerDiskInGb", "dockerArgs", "env", "isServerless")
    assert [{k: t[k] for k in (*keys, "containerRegistryAuthId")} for t in templates] == [
        {k: t[k] for k in (*keys, "containerRegistryAuthId")} for t in graphql_view["templates"]
    ]
    assert fresh["id"] not in {v["id"] for v in graphql_view["volumes"]}  # new ids never collide

    assert endpoint is not None and graphql_view["endpoint"] is not None
    over_graphql = outs_of(graphql_view["endpoint"], props)
    over_rest = outs_of(endpoint, props)
    # What the endpoint provider's outputs would hold: the same, but for what REST does not return.
    # (The container settings come from the props over GraphQL, from the answer over REST: asserted below.)
    assert {k: v for k, v in over_rest.items() if k not in ("version", *CONTAINER_KEYS)} == {
        k: v for k, v in over_graphql.items() if k != "version"
    }
    assert endpoint["templateId"] is None  # REST answers have no template: the provider keeps its input
    assert over_rest["templateId"] == template["id"]
    # ... and what REST returns that GraphQL kept on the template: the endpoint's own container settings.
    assert (endpoint["imageName"], endpoint["env"]) == (IMAGE, [{"key": "LOG", "value": "info"}])
    assert endpoint["containerRegistryAuthId"] == auth["id"]
