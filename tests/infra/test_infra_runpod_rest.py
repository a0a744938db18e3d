"""The RunPod REST v2 client against the spec-checked emulator: every method, errors, retries, redaction.

Every request the client sends and every answer it reads is validated against openapi-v2.json by the
emulator; ``running_emulator`` fails the test on any violation.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from infra.runpod_rest import (
    DEFAULT_URL,
    RunPodAPIError,
    RunPodNotFoundError,
    RunPodREST,
    RunPodTransportError,
    rate_limit_delay,
)
from tests.helpers import endpoint_fields
from tests.runpod_rest_emulator import Fault, RunPodRESTEmulator, running_emulator

IMAGE = "ghcr.io/me/comfy-runpod@sha256:" + "a" * 64
NEW_IMAGE = "ghcr.io/me/comfy-runpod@sha256:" + "b" * 64


@pytest.fixture
def emulator() -> Iterator[RunPodRESTEmulator]:
    yield from running_emulator()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def api(emulator: RunPodRESTEmulator, sleeps: list[float]) -> Iterator[RunPodREST]:
    with RunPodREST(emulator.api_key, url=emulator.url, sleep=sleeps.append, backoff_s=1.0) as client:
        yield client


def template_fields(**extra: Any) -> dict[str, Any]:
    return {
        "name": "comfy-tpl",
        "imageName": IMAGE,
        "containerDiskInGb": 20,
        "dockerArgs": "",
        "env": [{"key": "HF_TOKEN", "value": "hf_secret_value"}, {"key": "LOG", "value": "info"}],
        "volumeInGb": 0,
        "isServerless": True,
        **extra,
    }


def bodies(emulator: RunPodRESTEmulator, operation: str) -> list[Any]:
    return [r.body for r in emulator.requests if r.operation == operation]


# ── configuration ──────────────────────────────────────────────────────────────────────────────────────────


def test_base_url_from_env_default_and_no_key_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    assert RunPodREST("k" * 12).url == DEFAULT_URL == "https://api.runpod.io"
    monkeypatch.setenv("RUNPOD_REST_URL", "http://127.0.0.1:9/")
    client = RunPodREST("rpa_SECRET_abcdef")
    assert client.url == "http://127.0.0.1:9"
    assert "rpa_SECRET_abcdef" not in repr(client)
    with pytest.raises(ValueError, match="API key"):
        RunPodREST("")


def test_key_travels_only_in_the_bearer_header(api: RunPodREST, emulator: RunPodRESTEmulator) -> None:
    api.list_network_volumes()
    assert emulator.requests[-1].status == 200
    assert emulator.api_key not in emulator.requests[-1].path
    with RunPodREST("wrong-key-0123", url=emulator.url) as other, pytest.raises(RunPodAPIError) as caught:
        other.list_endpoints()
    assert caught.value.status == 401
    assert not isinstance(caught.value, RunPodNotFoundError)
    assert "invalid API key" in str(caught.value)
    assert "wrong-key-0123" not in str(caught.value)


# ── network volumes ────────────────────────────────────────────────────────────────────────────────────────


def test_network_volume_lifecycle(api: RunPodREST, emulator: RunPodRESTEmulator) -> None:
    created = api.create_network_volume(name="comfy-models", size=100, data_center_id="EU-RO-1")
    assert created == {
        "id": created["id"],
        "name": "comfy-models",
        "size": 100,
        "dataCenterId": "EU-RO-1",
        "type": "STANDARD",
    }
    fast = api.create_network_volume(
        name="fast", size=50, data_center_id="US-KS-2", volume_type="HIGH_PERFORMANCE"
    )
    assert fast["type"] == "HIGH_PERFORMANCE"
    assert bodies(emulator, "createNetworkVolume")[0] == {
        "name": "comfy-models",
        "size": 100,
        "dataCenter": "EU-RO-1",
    }
    grown = api.update_network_volume(created["id"], name=None, size=150)
    assert grown["size"] == 150
    assert bodies(emulator, "updateNetworkVolume") == [{"size": 150}]  # partial: only what changes
    assert {v["id"]: v["size"] for v in api.list_network_volumes()} == {created["id"]: 150, fast["id"]: 50}
    with pytest.raises(RunPodAPIError) as caught:
        api.update_network_volume(created["id"], name=None, size=120)
    assert caught.value.status == 400
    assert "may only increase (current 150 GB, asked 120)" in caught.value.message
    api.delete_network_volume(created["id"])
    with pytest.raises(RunPodNotFoundError):
        api.delete_network_volume(created["id"])
    assert [v["id"] for v in api.list_network_volumes()] == [fast["id"]]


def test_volume_type_and_update_are_checked_before_sending(api: RunPodREST) -> None:
    with pytest.raises(ValueError, match="STANDARD, HIGH_PERFORMANCE"):
        api.create_network_volume(name="x-vol", size=10, data_center_id="EU-RO-1", volume_type="FAST")
    with pytest.raises(ValueError, match="empty body"):
        api.update_network_volume("vol1", name=None, size=None)


# ── templates ──────────────────────────────────────────────────────────────────────────────────────────────


def test_template_create_patch_list_and_delete_by_name(api: RunPodREST, emulator: RunPodRESTEmulator) -> None:
    created = api.save_template(template_fields())
    assert created["imageName"] == IMAGE
    assert created["env"] == [
        {"key": "HF_TOKEN", "value": "hf_secret_value"},
        {"key": "LOG", "value": "info"},
    ]
    assert created["isServerless"] is True
    sent = bodies(emulator, "createTemplate")[0]
    assert sent["env"] == {"HF_TOKEN": "hf_secret_value", "LOG": "info"}
    assert sent["startSsh"] is False and sent["startJupyter"] is False  # no PUBLIC_KEY/JUPYTER env injected
    patched = api.save_template({"id": created["id"], "imageName": NEW_IMAGE})
    assert bodies(emulator, "updateTemplate") == [{"image": NEW_IMAGE}]
    assert patched["imageName"] == NEW_IMAGE
    assert patched["env"] == created["env"]  # PATCH left the rest alone
    assert [t["id"] for t in api.list_templates()] == [created["id"]]
    api.delete_template("comfy-tpl")
    assert api.list_templates() == []
    with pytest.raises(RunPodNotFoundError):
        api.delete_template("comfy-tpl")


def test_template_fields_rest_cannot_take_fail_before_sending(api: RunPodREST) -> None:
    with pytest.raises(ValueError, match="readme"):
        api.save_template(template_fields(readme="# hello"))
    with pytest.raises(ValueError, match="imagename"):
        api.save_template({**template_fields(), "imagename": "typo"})


# ── endpoints ──────────────────────────────────────────────────────────────────────────────────────────────


def test_endpoint_from_a_template_carries_its_container_settings(
    api: RunPodREST, emulator: RunPodRESTEmulator
) -> None:
    volume = api.create_network_volume(name="comfy-models", size=100, data_center_id="EU-RO-1")
    template = api.save_template(template_fields())
    endpoint = api.save_endpoint(endpoint_fields(templateId=template["id"], networkVolumeId=volume["id"]))
    assert bodies(emulator, "createEndpoint")[0] == {
        "name": "comfy",
        "type": "QUEUE",
        "templateId": template["id"],
        "gpu": {"pools": ["ADA_24", "AMPERE_48"], "count": 1, "allowedCudaVersions": ["13.0"]},
        "workers": {"min": 0, "max": 3, "idleTimeout": 5},
        "scaling": {"type": "QUEUE_DELAY", "queueDelay": 4},
        "dataCenterIds": ["EU-RO-1"],
        "networkVolumes": [volume["id"]],
        "timeout": 600000,
        "flashboot": "FLASHBOOT",
    }
    expected = {**endpoint_fields(), "id": endpoint["id"], "networkVolumeId": volume["id"]}
    assert {k: endpoint[k] for k in expected} == expected
    assert endpoint["networkVolumeIds"] == [{"networkVolumeId": volume["id"]}]
    assert endpoint["templateId"] is None  # REST answers carry no template: it only seeded the endpoint
    assert endpoint["imageName"] == IMAGE
    assert endpoint["env"] == template["env"]
    fetched = api.get_endpoint(endpoint["id"])
    assert fetched is not None
    assert fetched["version"] == 1
    assert [e["id"] for e in api.list_endpoints()] == [endpoint["id"]]


def test_patch_sends_only_the_given_fields_and_image_or_env_make_a_release(
    api: RunPodREST, emulator: RunPodRESTEmulator
) -> None:
    endpoint = api.save_endpoint(endpoint_fields(imageName=IMAGE, env={"LOG": "info"}))
    api.save_endpoint({"id": endpoint["id"], "workersMax": 5})
    api.save_endpoint({"id": endpoint["id"], "imageName": NEW_IMAGE, "env": {"LOG": "debug"}})
    assert bodies(emulator, "updateEndpoint") == [
        {"workers": {"max": 5}},
        {"image": NEW_IMAGE, "env": {"LOG": "debug"}},
    ]
    fetched = api.get_endpoint(endpoint["id"])
    assert fetched is not None
    assert (fetched["workersMax"], fetched["workersMin"], fetched["imageName"]) == (5, 0, NEW_IMAGE)
    assert fetched["env"] == [{"key": "LOG", "value": "debug"}]
    assert fetched["version"] == 3
    releases = api.list_endpoint_releases(endpoint["id"])
    assert [r["version"] for r in releases["releases"]] == [3, 2, 1]
    assert {d["field"] for d in releases["releases"][0]["diff"]} == {"image", "env"}


def test_workers_and_rollout_follow_a_new_release(api: RunPodREST, emulator: RunPodRESTEmulator) -> None:
    endpoint = api.save_endpoint(endpoint_fields(imageName=IMAGE))
    emulator.account.add_worker(endpoint["id"], status="RUNNING")
    emulator.account.add_worker(
        endpoint["id"], status="IDLE", gpu_type_id="NVIDIA L4", data_center_id="US-KS-2"
    )
    api.save_endpoint({"id": endpoint["id"], "imageName": NEW_IMAGE})
    workers = api.list_endpoint_workers(endpoint["id"])
    assert workers["endpointVersion"] == 2
    assert [(w["status"], w["image"], w["isStale"]) for w in workers["workers"]] == [
        ("RUNNING", IMAGE, True),
        ("IDLE", IMAGE, True),
    ]
    assert workers["summary"] == {
        "running": 1,
        "idle": 1,
        "initializing": 0,
        "throttled": 0,
        "unhealthy": 0,
        "total": 2,
    }
    rollout = api.list_endpoint_releases(endpoint["id"])
    assert rollout["rollout"] == {
        "inProgress": True,
        "workersOnLatest": 0,
        "workersTotal": 2,
        "percentOnLatest": 0,
    }
    assert [(r["version"], r["workerCount"]) for r in rollout["releases"]] == [(2, 0), (1, 2)]
    emulator.account.cycle_workers(endpoint["id"])
    workers = api.list_endpoint_workers(endpoint["id"])
    assert [(w["image"], w["isStale"]) for w in workers["workers"]] == [
        (NEW_IMAGE, False),
        (NEW_IMAGE, False),
    ]
    assert api.list_endpoint_releases(endpoint["id"])["rollout"]["percentOnLatest"] == 100
    api.delete_endpoint(endpoint["id"])
    with pytest.raises(RunPodNotFoundError):
        api.list_endpoint_workers(endpoint["id"])


def test_patch_clears_what_rest_lets_clear(api: RunPodREST, emulator: RunPodRESTEmulator) -> None:
    volume = api.create_network_volume(name="comfy-models", size=100, data_center_id="EU-RO-1")
    endpoint = api.save_endpoint(endpoint_fields(imageName=IMAGE, networkVolumeId=volume["id"]))
    cleared = api.save_endpoint(
        {"id": endpoint["id"], "locations": [], "networkVolumeId": None, "allowedCudaVersions": ""}
    )
    assert bodies(emulator, "updateEndpoint") == [
        {"gpu": {"allowedCudaVersions": []}, "dataCenterIds": [], "networkVolumes": []}
    ]
    assert (cleared["locations"], cleared["networkVolumeIds"], cleared["allowedCudaVersions"]) == ("", [], "")
    floor = api.save_endpoint({"id": endpoint["id"], "minCudaVersion": "12.8"})
    assert floor["minCudaVersion"] == "12.8"


def test_gpu_exclusions_travel_as_excluded_types(api: RunPodREST, emulator: RunPodRESTEmulator) -> None:
    endpoint = api.save_endpoint(endpoint_fields(imageName=IMAGE, gpuIds="ADA_48_PRO,-NVIDIA L40"))
    assert bodies(emulator, "createEndpoint")[0]["gpu"]["excludedTypes"] == ["NVIDIA L40"]
    assert endpoint["gpuIds"] == "ADA_48_PRO,-NVIDIA L40"
    api.save_endpoint({"id": endpoint["id"], "gpuIds": "ADA_48_PRO"})
    assert bodies(emulator, "updateEndpoint")[0]["gpu"] == {"pools": ["ADA_48_PRO"], "excludedTypes": []}


def test_scaler_type_and_value_go_together(api: RunPodREST) -> None:
    with pytest.raises(ValueError, match="scalerType and scalerValue"):
        api.save_endpoint({"id": "ep1", "scalerValue": 6})


def test_get_endpoint_of_a_missing_id_is_none(api: RunPodREST) -> None:
    assert api.get_endpoint("nope0000") is None


def test_endpoint_delete_takes_its_bound_template(api: RunPodREST) -> None:
    template = api.save_template(template_fields())
    endpoint = api.save_endpoint(endpoint_fields(templateId=template["id"]))
    with pytest.raises(RunPodAPIError) as refused:
        api.delete_template("comfy-tpl")
    assert refused.value.status == 400
    assert "bound to serverless endpoint" in refused.value.message
    api.delete_endpoint(endpoint["id"])
    assert api.list_templates() == []
    with pytest.raises(RunPodNotFoundError):  # what the template provider's delete treats as done
        api.delete_template("comfy-tpl")
    with pytest.raises(RunPodNotFoundError):
        api.delete_endpoint(endpoint["id"])


# ── registry credentials ───────────────────────────────────────────────────────────────────────────────────


def test_registry_credentials_are_write_only(api: RunPodREST, emulator: RunPodRESTEmulator) -> None:
    saved = api.save_registry_auth(name="ghcr-me", username="robot-user", password="ghp_PASSWORD_123456")
    assert saved == {"id": saved["id"], "name": "ghcr-me"}
    assert api.list_registry_auths() == [saved]
    template = api.save_template(template_fields(containerRegistryAuthId=saved["id"]))
    assert template["containerRegistryAuthId"] == saved["id"]
    answers = b"".join(r.answer for r in emulator.requests)
    assert b"ghp_PASSWORD_123456" not in answers and b"robot-user" not in answers
    assert not hasattr(api, "update_registry_auth")  # REST cannot change a credential
    api.delete_registry_auth(saved["id"])
    assert api.list_templates()[0]["containerRegistryAuthId"] is None  # RunPod nulls the reference
    with pytest.raises(RunPodNotFoundError):
        api.delete_registry_auth(saved["id"])


# ── catalog ────────────────────────────────────────────────────────────────────────────────────────────────


def test_gpu_catalog_with_serverless_availability(api: RunPodREST, emulator: RunPodRESTEmulator) -> None:
    gpus = api.list_gpu_types()
    request = emulator.requests[-1]
    assert (request.operation, request.status) == ("listGpuTypes", 200)
    ada = [g for g in gpus if g["pool"] == "ADA_24"]
    assert ada and all("availability" in g and "cudaVersions" in g for g in ada)


# ── errors ─────────────────────────────────────────────────────────────────────────────────────────────────


def test_problem_details_and_validation_errors_are_kept(api: RunPodREST) -> None:
    with pytest.raises(RunPodAPIError) as caught:
        api.call(
            "createNetworkVolume",
            "POST",
            "/v2/network-volumes",
            body={"name": "v-1", "size": 10, "dataCenter": "EU-RO-1", "sizeGb": 10},
        )
    assert caught.value.status == 422
    assert caught.value.operation == "createNetworkVolume"
    assert "Unprocessable Entity: request validation failed" in caught.value.message
    assert "'sizeGb' was unexpected" in caught.value.message  # the problem's `errors` entry


def test_secrets_are_redacted_from_errors(api: RunPodREST, emulator: RunPodRESTEmulator) -> None:
    emulator.inject(
        Fault(400, operation="createRegistry", detail="bad password ghp_PASSWORD_123456 for robot-user")
    )
    with pytest.raises(RunPodAPIError) as caught:
        api.save_registry_auth(name="ghcr-me", username="robot-user", password="ghp_PASSWORD_123456")
    assert "ghp_PASSWORD_123456" not in str(caught.value)
    assert "robot-user" not in str(caught.value)
    assert "bad password *** for ***" in str(caught.value)
    emulator.inject(Fault(400, operation="listEndpoints", detail=f"key {emulator.api_key} refused"))
    with pytest.raises(RunPodAPIError) as caught:
        api.list_endpoints()
    assert emulator.api_key not in str(caught.value)
    assert "key *** refused" in str(caught.value)


def test_redact_covers_values_handed_to_the_client(emulator: RunPodRESTEmulator) -> None:
    emulator.inject(Fault(500, operation="listTemplates", detail="env hf_secret_value leaked"))
    client = RunPodREST(emulator.api_key, url=emulator.url, attempts=1, redact=["hf_secret_value"])
    with client, pytest.raises(RunPodTransportError) as caught:
        client.list_templates()
    assert "env *** leaked" in str(caught.value)


# ── retries ────────────────────────────────────────────────────────────────────────────────────────────────


def test_reads_are_retried_on_5xx_with_backoff(
    api: RunPodREST, emulator: RunPodRESTEmulator, sleeps: list[float]
) -> None:
    emulator.inject(Fault(503, operation="listEndpoints"), Fault(502, operation="listEndpoints"))
    assert api.list_endpoints() == []
    assert sleeps == [1.0, 2.0]
    assert emulator.operations().count("listEndpoints") == 3


def test_reads_give_up_after_the_attempts(api: RunPodREST, emulator: RunPodRESTEmulator) -> None:
    emulator.inject(*[Fault(500, operation="listTemplates") for _ in range(4)])
    with pytest.raises(RunPodTransportError) as caught:
        api.list_templates()
    assert caught.value.status == 500
    assert not caught.value.maybe_applied
    assert emulator.operations().count("listTemplates") == 4


def test_429_honours_retry_after_then_rate_limit(
    api: RunPodREST, emulator: RunPodRESTEmulator, sleeps: list[float]
) -> None:
    emulator.inject(
        Fault(429, operation="createNetworkVolume", retry_after=7),
        Fault(429, operation="createNetworkVolume", rate_limit='"minute";r=0;t=12, "hour";r=2800;t=1812'),
    )
    created = api.create_network_volume(name="comfy-models", size=100, data_center_id="EU-RO-1")
    assert sleeps == [7.0, 12.0]
    assert [v["id"] for v in api.list_network_volumes()] == [created["id"]]  # refused twice, applied once


def test_a_write_that_may_have_applied_is_never_resent(api: RunPodREST, emulator: RunPodRESTEmulator) -> None:
    endpoint = api.save_endpoint(endpoint_fields(imageName=IMAGE))
    emulator.inject(Fault(502, operation="updateEndpoint", apply_first=True))
    with pytest.raises(RunPodTransportError) as caught:
        api.save_endpoint({"id": endpoint["id"], "workersMax": 6})
    assert caught.value.maybe_applied
    assert caught.value.status == 502
    assert emulator.operations().count("updateEndpoint") == 1
    emulator.inject(Fault(500, operation="deleteEndpoint"))
    with pytest.raises(RunPodTransportError) as deleted:
        api.delete_endpoint(endpoint["id"])
    assert deleted.value.maybe_applied
    assert emulator.operations().count("deleteEndpoint") == 1


@pytest.mark.parametrize(
    ("operation", "create"),
    [
        (
            "createNetworkVolume",
            lambda a: a.create_network_volume(name="vol", size=10, data_center_id="EU-RO-1"),
        ),
        ("createTemplate", lambda a: a.save_template(template_fields())),
        ("createEndpoint", lambda a: a.save_endpoint(endpoint_fields(imageName=IMAGE))),
        (
            "createRegistry",
            lambda a: a.save_registry_auth(name="ghcr-me", username="u-1", password="p-123456"),
        ),
    ],
)
def test_create_whose_answer_was_lost_finds_the_object_by_name(
    api: RunPodREST, emulator: RunPodRESTEmulator, operation: str, create: Any
) -> None:
    emulator.inject(Fault(500, operation=operation, apply_first=True))
    created = create(api)
    assert emulator.operations().count(operation) == 1  # not re-sent
    listers = {
        "createNetworkVolume": api.list_network_volumes,
        "createTemplate": api.list_templates,
        "createEndpoint": api.list_endpoints,
        "createRegistry": api.list_registry_auths,
    }
    assert [o["id"] for o in listers[operation]()] == [created["id"]]


def test_create_recovery_ignores_older_objects_with_the_same_name(
    api: RunPodREST, emulator: RunPodRESTEmulator
) -> None:
    older = api.create_network_volume(name="comfy-models", size=100, data_center_id="EU-RO-1")
    emulator.inject(Fault(500, operation="createNetworkVolume", apply_first=True))
    created = api.create_network_volume(name="comfy-models", size=100, data_center_id="EU-RO-1")
    assert created["id"] != older["id"]
    assert len(api.list_network_volumes()) == 2


def test_create_that_did_not_apply_still_fails(api: RunPodREST, emulator: RunPodRESTEmulator) -> None:
    emulator.inject(Fault(500, operation="createNetworkVolume"))
    with pytest.raises(RunPodTransportError) as caught:
        api.create_network_volume(name="comfy-models", size=100, data_center_id="EU-RO-1")
    assert caught.value.maybe_applied
    assert api.list_network_volumes() == []
    assert emulator.operations().count("createNetworkVolume") == 1


def test_read_timeouts_retry_reads_but_never_writes(
    emulator: RunPodRESTEmulator, sleeps: list[float]
) -> None:
    client = RunPodREST(
        emulator.api_key, url=emulator.url, sleep=sleeps.append, timeout=httpx.Timeout(1.0, connect=5.0)
    )
    with client:
        emulator.inject(Fault(None, operation="listNetworkVolumes", delay_s=2.5))
        assert client.list_network_volumes() == []  # the second try answered in time
        assert emulator.operations().count("listNetworkVolumes") == 2
        assert sleeps == [1.0]
        emulator.inject(Fault(None, operation="createNetworkVolume", apply_first=True, delay_s=2.5))
        volume = client.create_network_volume(name="comfy-models", size=100, data_center_id="EU-RO-1")
        assert emulator.operations().count("createNetworkVolume") == 1  # not re-sent: found by name
        assert [v["id"] for v in client.list_network_volumes()] == [volume["id"]]
        emulator.inject(Fault(None, operation="updateNetworkVolume", apply_first=True, delay_s=2.5))
        with pytest.raises(RunPodTransportError) as caught:
            client.update_network_volume(volume["id"], name=None, size=200)
        assert caught.value.maybe_applied
        assert "ReadTimeout" in caught.value.message
        assert emulator.operations().count("updateNetworkVolume") == 1
    assert client.url == emulator.url


def test_connection_refused_is_retried_then_a_transport_error(sleeps: list[float]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = RunPodREST("k" * 16, url=f"http://127.0.0.1:{port}", sleep=sleeps.append, backoff_s=0.5)
    with client, pytest.raises(RunPodTransportError) as caught:
        client.delete_endpoint("ep1")  # a write: safe to retry, nothing was sent
    assert not caught.value.maybe_applied
    assert sleeps == [0.5, 1.0, 2.0]
    assert "k" * 16 not in str(caught.value)


def test_rate_limit_header_parsing() -> None:
    assert rate_limit_delay('"minute";r=0;t=12, "hour";r=2800;t=1812') == 12.0
    assert rate_limit_delay('"minute";r=0;t=12, "hour";r=0;t=20') == 20.0
    assert rate_limit_delay('"minute";r=5;t=12') is None
    assert rate_limit_delay(None) is None
    assert rate_limit_delay("garbage") is None
