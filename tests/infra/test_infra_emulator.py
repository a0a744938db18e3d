"""The RunPod emulator itself: schema validation, input defaults on upserts, business rules, faults.

These pin the emulator's behaviour so that the provider tests built on it can trust it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

pytest.importorskip("graphql")

from infra.runpod_graphql import (
    RunPodAPIError,
    RunPodGraphQL,
    RunPodNotFoundError,
    RunPodTransportError,
)
from tests.runpod_emulator import Fault, RunPodEmulator

SAVE_TEMPLATE = (
    "mutation SaveTemplate($input: SaveTemplateInput) "
    "{ saveTemplate(input: $input) { id name env { key value } } }"
)
DELETE_TEMPLATE = "mutation DeleteTemplate($name: String) { deleteTemplate(templateName: $name) }"
SAVE_ENDPOINT = (
    "mutation SaveEndpoint($input: EndpointInput!) { saveEndpoint(input: $input) "
    "{ id name templateId workersMin workersMax idleTimeout scalerValue gpuCount locations version "
    "networkVolumeIds { networkVolumeId dataCenterId } } }"
)
DELETE_ENDPOINT = "mutation DeleteEndpoint($id: String!) { deleteEndpoint(id: $id) }"
GET_ENDPOINT = "query GetEndpoint($id: String!) { myself { endpoint(id: $id) { id name workersMax } } }"


@pytest.fixture
def api(emulator: RunPodEmulator) -> Iterator[RunPodGraphQL]:
    with RunPodGraphQL(emulator.api_key, url=emulator.url, backoff_s=0) as client:
        yield client


def template_input(**extra: Any) -> dict[str, Any]:
    return {"name": "comfy-worker", "imageName": "repo/comfy:1", "containerDiskInGb": 20, "volumeInGb": 0,
            "dockerArgs": "", "env": [], **extra}  # fmt: skip


def save_template(api: RunPodGraphQL, **extra: Any) -> dict[str, Any]:
    result: dict[str, Any] = api.execute(SAVE_TEMPLATE, {"input": template_input(**extra)})["saveTemplate"]
    return result


def save_endpoint(api: RunPodGraphQL, **fields: Any) -> dict[str, Any]:
    result: dict[str, Any] = api.execute(SAVE_ENDPOINT, {"input": fields})["saveEndpoint"]
    return result


def test_invalid_operations_are_rejected_with_400(emulator: RunPodEmulator) -> None:
    response = httpx.post(
        emulator.url,
        json={"query": "query Bad { myself { noSuchField } }"},
        headers={"Authorization": f"Bearer {emulator.api_key}"},
    )
    assert response.status_code == 400
    assert "noSuchField" in response.json()["errors"][0]["message"]


def test_a_missing_required_template_field_is_a_schema_error(api: RunPodGraphQL) -> None:
    fields = template_input()
    del fields["env"]  # RunPod needs env even as []
    with pytest.raises(RunPodAPIError, match=r"HTTP 400.*env"):
        api.execute(SAVE_TEMPLATE, {"input": fields})


def test_auth_is_required_and_the_key_is_refused_in_the_url(emulator: RunPodEmulator) -> None:
    query = {"query": "query Q { myself { id } }"}
    assert httpx.post(emulator.url, json=query).status_code == 401
    headers = {"Authorization": f"Bearer {emulator.api_key}"}
    assert httpx.post(emulator.url + "?api_key=x", json=query, headers=headers).status_code == 400


def test_endpoint_upsert_applies_input_defaults_and_is_a_full_replace(api: RunPodGraphQL) -> None:
    template = save_template(api)
    created = save_endpoint(api, name="comfy", templateId=template["id"], workersMax=5, idleTimeout=60)
    assert (created["workersMin"], created["workersMax"], created["scalerValue"], created["gpuCount"]) == (
        0,
        5,
        4,
        1,
    )
    assert created["version"] == 0
    # workersMax left out of the update: it falls back to the schema default 3, not the stored 5.
    updated = save_endpoint(api, id=created["id"], name="comfy", templateId=template["id"])
    assert updated["workersMax"] == 3
    assert updated["idleTimeout"] == 10
    assert updated["version"] == 1
    assert api.execute(GET_ENDPOINT, {"id": created["id"]})["myself"]["endpoint"]["workersMax"] == 3


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "ab"}, "at least 3 characters"),
        ({"scalerValue": 0}, "scalerValue"),
        ({"idleTimeout": 0}, "idleTimeout"),
        ({"idleTimeout": 3601}, "idleTimeout"),
        ({"templateId": "tpl-nope"}, "not found"),
        ({"template": {"name": "inline", "containerDiskInGb": 20, "dockerArgs": "", "env": []}}, "not both"),
        ({"allowedCudaVersions": "13.0,14.2"}, "Invalid CUDA version 14.2"),
        ({"minCudaVersion": "cuda13"}, "Invalid CUDA version cuda13"),
    ],
)
def test_endpoint_rules(api: RunPodGraphQL, fields: dict[str, Any], message: str) -> None:
    template = save_template(api)
    with pytest.raises(RunPodAPIError, match=message):
        save_endpoint(api, **{"name": "comfy", "templateId": template["id"], **fields})


def test_endpoint_locations_must_include_the_volume_data_center(
    api: RunPodGraphQL, emulator: RunPodEmulator
) -> None:
    template = save_template(api)
    volume = emulator.account.create_volume({"name": "models", "size": 50, "dataCenterId": "EU-RO-1"})
    base = {
        "name": "comfy",
        "templateId": template["id"],
        "networkVolumeIds": [{"networkVolumeId": volume["id"]}],
    }
    with pytest.raises(RunPodAPIError, match="must include the network volume's data center EU-RO-1"):
        save_endpoint(api, **base, locations="US-KS-2")
    ok = save_endpoint(api, **base, locations="US-KS-2,EU-RO-1")
    assert ok["networkVolumeIds"] == [{"networkVolumeId": volume["id"], "dataCenterId": "EU-RO-1"}]


def test_template_names_are_unique(api: RunPodGraphQL) -> None:
    first = save_template(api)
    with pytest.raises(RunPodAPIError, match="unique"):
        save_template(api)
    assert save_template(api, id=first["id"], env=[{"key": "A", "value": "1"}])["env"] == [
        {"key": "A", "value": "1"}
    ]


def test_a_template_in_use_cannot_be_deleted_until_the_grace_period_passed(
    api: RunPodGraphQL, emulator: RunPodEmulator
) -> None:
    now = [1000.0]
    emulator.account.clock = lambda: now[0]
    template = save_template(api)
    endpoint = save_endpoint(api, name="comfy", templateId=template["id"], workersMax=2)
    with pytest.raises(RunPodAPIError, match="in use"):
        api.execute(DELETE_TEMPLATE, {"name": "comfy-worker"})
    with pytest.raises(RunPodAPIError, match="must be 0"):
        api.execute(DELETE_ENDPOINT, {"id": endpoint["id"]})
    save_endpoint(api, id=endpoint["id"], name="comfy", templateId=template["id"], workersMax=0)
    api.execute(DELETE_ENDPOINT, {"id": endpoint["id"]})
    with pytest.raises(RunPodAPIError, match="recently in use"):
        api.execute(DELETE_TEMPLATE, {"name": "comfy-worker"})
    now[0] += 121
    api.execute(DELETE_TEMPLATE, {"name": "comfy-worker"})
    with pytest.raises(RunPodNotFoundError):
        api.execute(DELETE_TEMPLATE, {"name": "comfy-worker"})


def test_volume_rules(api: RunPodGraphQL, emulator: RunPodEmulator) -> None:
    with pytest.raises(RunPodAPIError, match="between 10 and 4096"):
        api.create_network_volume(name="models", size=5, data_center_id="EU-RO-1")
    volume = api.create_network_volume(name="models", size=50, data_center_id="EU-RO-1")
    with pytest.raises(RunPodAPIError, match="only be increased"):
        api.update_network_volume(volume["id"], name="models", size=40)
    assert api.update_network_volume(volume["id"], name="models", size=60)["size"] == 60
    template = save_template(api)
    endpoint = save_endpoint(
        api, name="comfy", templateId=template["id"], networkVolumeId=volume["id"], workersMax=0
    )
    with pytest.raises(RunPodAPIError, match="in use"):
        api.delete_network_volume(volume["id"])
    api.execute(DELETE_ENDPOINT, {"id": endpoint["id"]})
    api.delete_network_volume(volume["id"])
    with pytest.raises(RunPodNotFoundError):
        api.delete_network_volume(volume["id"])


def test_faults_are_consumed_in_order_and_can_apply_first(
    api: RunPodGraphQL, emulator: RunPodEmulator
) -> None:
    emulator.inject(Fault(502), Fault(200, message="boom"))
    with pytest.raises(RunPodAPIError, match="boom"):
        api.list_network_volumes()  # 502 retried, then the GraphQL error
    assert [r.status for r in emulator.requests] == [502, 200]
    emulator.inject(Fault(500, operation="CreateNetworkVolume", apply_first=True))
    api.list_network_volumes()  # not matched by the operation filter
    with pytest.raises(RunPodTransportError):
        api.create_network_volume(name="models", size=50, data_center_id="EU-RO-1")
    assert len(emulator.account.volumes) == 1


def test_endpoint_cuda_versions_and_flashboot_are_stored(api: RunPodGraphQL) -> None:
    template = save_template(api)
    query = (
        "mutation SaveEndpoint($input: EndpointInput!) "
        "{ saveEndpoint(input: $input) { id allowedCudaVersions flashBootType } }"
    )
    fields = {"name": "comfy", "templateId": template["id"], "allowedCudaVersions": "12.9,13.0"}
    saved = api.execute(query, {"input": fields | {"flashBootType": "PRIORITY_FLASHBOOT"}})["saveEndpoint"]
    assert (saved["allowedCudaVersions"], saved["flashBootType"]) == ("12.9,13.0", "PRIORITY_FLASHBOOT")
    with pytest.raises(RunPodAPIError, match="HTTP 400"):  # an enum, not any string
        api.execute(query, {"input": fields | {"flashBootType": "ON"}})


def test_an_endpoint_attaches_one_volume_per_data_center(
    api: RunPodGraphQL, emulator: RunPodEmulator
) -> None:
    template = save_template(api)
    first = emulator.account.create_volume({"name": "models-a", "size": 50, "dataCenterId": "EU-RO-1"})
    second = emulator.account.create_volume({"name": "models-b", "size": 50, "dataCenterId": "EU-RO-1"})
    base = {"name": "comfy", "templateId": template["id"]}
    both = [{"networkVolumeId": first["id"]}, {"networkVolumeId": second["id"]}]
    with pytest.raises(RunPodAPIError, match="one network volume per data center"):
        save_endpoint(api, **base, networkVolumeIds=both)
    with pytest.raises(RunPodAPIError, match="not both"):
        save_endpoint(api, **base, networkVolumeId=first["id"], networkVolumeIds=both[1:])
