"""The REST v2 emulator itself: it validates requests and answers against the spec and enforces the spec's
rules. Raw HTTP (httpx) here, not the client, so the rules are checked with bodies the client never sends."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.runpod_rest_emulator import RunPodRESTEmulator, running_emulator

IMAGE = "ghcr.io/me/comfy-runpod@sha256:" + "d" * 64
QUEUE = {"type": "QUEUE_DELAY", "queueDelay": 4}


@pytest.fixture
def emulator() -> Iterator[RunPodRESTEmulator]:
    yield from running_emulator()


@pytest.fixture
def http(emulator: RunPodRESTEmulator) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {emulator.api_key}"}
    with httpx.Client(base_url=emulator.url, headers=headers, timeout=10) as client:
        yield client


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def endpoint_body(**extra: Any) -> dict[str, Any]:
    return {
        "name": "comfy",
        "type": "QUEUE",
        "image": IMAGE,
        "gpu": {"pools": ["ADA_24"]},
        "scaling": QUEUE,
    } | extra


def create(http: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = http.post(path, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


# ── request validation ─────────────────────────────────────────────────────────────────────────────────────


def test_unknown_fields_are_422_with_the_validation_errors(http: httpx.Client) -> None:
    body = problem(http.post("/v2/serverless", json=endpoint_body(gpuIds="ADA_24")), 422)
    assert any("'gpuIds' was unexpected" in e for e in body["errors"])
    body = problem(
        http.post("/v2/network-volumes", json={"name": "v", "size": 5, "dataCenter": "EU-RO-1"}), 422
    )
    assert any(e.startswith("$.size:") for e in body["errors"])


def test_missing_or_wrong_key_is_401(emulator: RunPodRESTEmulator) -> None:
    assert problem(httpx.get(f"{emulator.url}/v2/serverless"), 401)["detail"] == "missing bearer token"
    wrong = httpx.get(f"{emulator.url}/v2/serverless", headers={"Authorization": "Bearer nope"})
    assert problem(wrong, 401)["detail"] == "invalid API key"


def test_a_path_outside_the_spec_is_recorded_as_a_violation(
    emulator: RunPodRESTEmulator, http: httpx.Client
) -> None:
    problem(http.get("/v2/endpoints"), 404)
    assert emulator.violations == ["GET /v2/endpoints: no operation in the spec"]
    emulator.violations.clear()


def test_an_operation_not_emulated_is_a_violation_not_a_fake(
    emulator: RunPodRESTEmulator, http: httpx.Client
) -> None:
    problem(http.get("/v2/billing/pods"), 404)
    assert emulator.violations == ["listPodBilling: not emulated (listPodBilling)"]
    emulator.violations.clear()


def test_an_answer_outside_the_spec_is_caught(emulator: RunPodRESTEmulator, http: httpx.Client) -> None:
    volume = create(http, "/v2/network-volumes", {"name": "v-1", "size": 10, "dataCenter": "EU-RO-1"})
    del emulator.account.volumes[volume["id"]]["type"]  # an emulator bug: NetworkVolume requires `type`
    problem(http.get(f"/v2/network-volumes/{volume['id']}"), 500)
    assert len(emulator.violations) == 1
    assert "getNetworkVolume answered 200 outside the spec" in emulator.violations[0]
    assert "'type' is a required property" in emulator.violations[0]
    emulator.violations.clear()


# ── network volumes ────────────────────────────────────────────────────────────────────────────────────────


def test_volume_size_only_grows_and_type_is_immutable(http: httpx.Client) -> None:
    volume = create(http, "/v2/network-volumes", {"name": "v-1", "size": 50, "dataCenter": "EU-RO-1"})
    assert volume["type"] == "STANDARD"
    assert (
        "only increase"
        in problem(http.patch(f"/v2/network-volumes/{volume['id']}", json={"size": 40}), 400)["detail"]
    )
    problem(http.patch(f"/v2/network-volumes/{volume['id']}", json={"type": "HIGH_PERFORMANCE"}), 422)
    problem(http.patch(f"/v2/network-volumes/{volume['id']}", json={}), 422)  # minProperties: 1
    grown = http.patch(f"/v2/network-volumes/{volume['id']}", json={"size": 60}).json()
    assert (grown["size"], grown["type"]) == (60, "STANDARD")


# ── endpoints ──────────────────────────────────────────────────────────────────────────────────────────────


def test_exactly_one_of_gpu_or_cpu(http: httpx.Client) -> None:
    both = endpoint_body(cpu=[{"id": "cpu5c", "vcpuCount": 4}])
    assert "exactly one of gpu or cpu" in problem(http.post("/v2/serverless", json=both), 400)["detail"]
    neither = {k: v for k, v in endpoint_body().items() if k != "gpu"}
    assert "exactly one of gpu or cpu" in problem(http.post("/v2/serverless", json=neither), 400)["detail"]


def test_cuda_set_and_floor_are_exclusive_also_across_a_patch(http: httpx.Client) -> None:
    both = endpoint_body(gpu={"pools": ["ADA_24"], "allowedCudaVersions": ["13.0"], "minCudaVersion": "12.8"})
    assert "mutually exclusive" in problem(http.post("/v2/serverless", json=both), 400)["detail"]
    floor_and_empty = endpoint_body(
        gpu={"pools": ["ADA_24"], "allowedCudaVersions": [], "minCudaVersion": "12.8"}
    )
    endpoint = create(http, "/v2/serverless", floor_and_empty)
    assert endpoint["gpu"]["minCudaVersion"] == "12.8"
    path = f"/v2/serverless/{endpoint['id']}"
    problem(http.patch(path, json={"gpu": {"allowedCudaVersions": ["13.0"]}}), 400)  # the floor is still set
    swapped = http.patch(path, json={"gpu": {"allowedCudaVersions": ["13.0"], "minCudaVersion": ""}})
    assert swapped.status_code == 200, swapped.text
    assert (swapped.json()["gpu"]["allowedCudaVersions"], swapped.json()["gpu"]["minCudaVersion"]) == (
        ["13.0"],
        None,
    )


def test_pools_and_exclusions_are_checked_against_the_catalog(http: httpx.Client) -> None:
    unknown = endpoint_body(gpu={"pools": ["ADA_99"]})
    assert (
        "unknown serverless GPU pool ADA_99"
        in problem(http.post("/v2/serverless", json=unknown), 400)["detail"]
    )
    stray = endpoint_body(gpu={"pools": ["ADA_24"], "excludedTypes": ["NVIDIA H200"]})
    assert (
        "not a GPU type of the selected pools"
        in problem(http.post("/v2/serverless", json=stray), 400)["detail"]
    )
    empty = endpoint_body(
        gpu={"pools": ["ADA_24"], "excludedTypes": ["NVIDIA L4", "NVIDIA GeForce RTX 4090"]}
    )
    assert "leaves no GPU type" in problem(http.post("/v2/serverless", json=empty), 400)["detail"]


def test_idle_timeout_is_refused_with_request_count_scaling(http: httpx.Client) -> None:
    body = endpoint_body(scaling={"type": "REQUEST_COUNT", "requestCount": 2}, workers={"idleTimeout": 5})
    problem(http.post("/v2/serverless", json=body), 400)
    endpoint = create(
        http, "/v2/serverless", endpoint_body(scaling={"type": "REQUEST_COUNT", "requestCount": 2})
    )
    assert "idleTimeout" not in endpoint["workers"]


def test_template_seeds_the_endpoint_body_wins_env_merges(http: httpx.Client) -> None:
    template = create(
        http,
        "/v2/templates",
        {
            "name": "comfy-tpl",
            "image": IMAGE,
            "serverless": True,
            "env": {"A": "template", "B": "template"},
            "allowedCudaVersions": ["13.0"],
            "disk": 25,
        },
    )
    body = endpoint_body(templateId=template["id"], env={"B": "body"}, disk=40)
    del body["image"]
    endpoint = create(http, "/v2/serverless", body)
    assert endpoint["env"] == {"A": "template", "B": "body"}
    assert (endpoint["image"], endpoint["disk"]) == (IMAGE, 40)
    assert endpoint["gpu"]["allowedCudaVersions"] == ["13.0"]
    assert "templateId" not in endpoint
    pod_template = create(http, "/v2/templates", {"name": "pod-tpl", "image": IMAGE})
    problem(http.post("/v2/serverless", json=endpoint_body(templateId=pod_template["id"])), 422)
    problem(http.post("/v2/serverless", json=endpoint_body(templateId="tpl-missing")), 404)


def test_patch_is_partial_and_changes_make_releases(http: httpx.Client) -> None:
    endpoint = create(http, "/v2/serverless", endpoint_body(env={"LOG": "info"}, workers={"max": 3}))
    path = f"/v2/serverless/{endpoint['id']}"
    patched = http.patch(path, json={"workers": {"max": 5}}).json()
    assert patched["workers"] == {"min": 0, "max": 5, "idleTimeout": 10}
    assert (patched["image"], patched["env"], patched["gpu"]["pools"]) == (IMAGE, {"LOG": "info"}, ["ADA_24"])
    http.patch(path, json={"image": IMAGE.replace("d", "e"), "env": {"LOG": "debug"}})
    http.patch(path, json={"workers": {"max": 5}})  # no change: no release
    releases = http.get(f"{path}/releases").json()
    assert releases["endpointVersion"] == 3
    assert [r["version"] for r in releases["releases"]] == [3, 2, 1]
    assert releases["releases"][1]["diff"] == [{"field": "workers.max", "old": 3, "new": 5}]
    assert {d["field"]: d["new"] for d in releases["releases"][0]["diff"]} == {
        "image": IMAGE.replace("d", "e"),
        "env": {"LOG": "debug"},
    }


def test_compute_family_is_fixed(http: httpx.Client) -> None:
    endpoint = create(http, "/v2/serverless", endpoint_body())
    body = {"cpu": [{"id": "cpu5c", "vcpuCount": 4}]}
    problem(http.patch(f"/v2/serverless/{endpoint['id']}", json=body), 400)


def test_template_delete_refused_while_bound_and_endpoint_delete_takes_it(http: httpx.Client) -> None:
    template = create(http, "/v2/templates", {"name": "comfy-tpl", "image": IMAGE, "serverless": True})
    body = endpoint_body(templateId=template["id"])
    endpoint = create(http, "/v2/serverless", body)
    refused = problem(http.delete(f"/v2/templates/{template['id']}"), 400)
    assert endpoint["id"] in refused["detail"]
    assert http.delete(f"/v2/serverless/{endpoint['id']}").status_code == 204
    problem(http.get(f"/v2/templates/{template['id']}"), 404)
    problem(http.get(f"/v2/serverless/{endpoint['id']}/releases"), 404)
    unbound = create(http, "/v2/templates", {"name": "other-tpl", "image": IMAGE})
    assert http.delete(f"/v2/templates/{unbound['id']}").status_code == 204


def test_template_names_are_unique(http: httpx.Client) -> None:
    create(http, "/v2/templates", {"name": "comfy-tpl", "image": IMAGE})
    problem(http.post("/v2/templates", json={"name": "comfy-tpl", "image": IMAGE}), 400)


# ── registries and catalog ─────────────────────────────────────────────────────────────────────────────────


def test_registry_credentials_never_come_back(http: httpx.Client) -> None:
    registry = create(
        http, "/v2/registries", {"name": "ghcr-me", "username": "robot", "password": "pw-SECRET-1"}
    )
    template = create(http, "/v2/templates", {"name": "t-1", "image": IMAGE, "registry": registry["id"]})
    answers = [
        registry,
        http.get(f"/v2/registries/{registry['id']}").json(),
        http.get("/v2/registries").json(),
    ]
    assert all("pw-SECRET-1" not in str(a) and "robot" not in str(a) for a in answers)
    assert answers[1] == {"id": registry["id"], "name": "ghcr-me"}
    problem(http.post("/v2/templates", json={"name": "t-2", "image": IMAGE, "registry": "reg-missing"}), 400)
    assert http.delete(f"/v2/registries/{registry['id']}").status_code == 204
    assert http.get(f"/v2/templates/{template['id']}").json()["registry"] is None


def test_catalog_availability_only_when_asked_with_a_product(http: httpx.Client) -> None:
    plain = http.get("/v2/catalog/gpus").json()["gpus"]
    assert plain and all("availability" not in g and "cudaVersions" not in g for g in plain)
    rich = http.get("/v2/catalog/gpus", params={"include": "AVAILABILITY", "product": "SERVERLESS"}).json()[
        "gpus"
    ]
    assert all("availability" in g for g in rich)
    problem(http.get("/v2/catalog/gpus", params={"include": "AVAILABILITY"}), 400)
    problem(http.get("/v2/catalog/gpus", params={"product": "SERVERLESS"}), 400)
    problem(http.get("/v2/catalog/gpus", params={"include": "PRICES", "product": "SERVERLESS"}), 422)


# ── workers' logs ──────────────────────────────────────────────────────────────────────────────────────────


def sse_lines(response: httpx.Response) -> list[tuple[str, str]]:
    """(id, line) of each event of a Server-Sent Events answer."""
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "text/event-stream"
    events = []
    for block in response.text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if fields:
            data = json.loads(fields["data"])
            assert data["ts"] == fields["id"]
            events.append((fields["id"], f"{data['source']}:{data['line']}"))
    return events


def test_worker_logs_backfill_filter_and_resume(emulator: RunPodRESTEmulator, http: httpx.Client) -> None:
    endpoint = create(http, "/v2/serverless", endpoint_body())
    worker = emulator.account.add_worker(endpoint["id"])
    for i in range(5):
        emulator.account.log(worker, f"line {i}")
    emulator.account.log(worker, "pulling image", source="system")
    path = f"/v2/serverless/{endpoint['id']}/workers/{worker}/logs"
    events = sse_lines(http.get(path))
    assert [line for _, line in events] == [
        *(f"container:line {i}" for i in range(5)),
        "system:pulling image",
    ]
    assert [line for _, line in sse_lines(http.get(path, params={"tail": 2}))] == [
        "container:line 4",
        "system:pulling image",
    ]
    assert sse_lines(http.get(path, params={"tail": 0})) == []
    container = sse_lines(http.get(path, params={"source": "container"}))
    assert len(container) == 5
    resumed = sse_lines(http.get(path, headers={"Last-Event-ID": container[2][0]}, params={"tail": 1}))
    assert [line for _, line in resumed] == ["container:line 3", "container:line 4", "system:pulling image"]
    since = sse_lines(http.get(path, params={"since": container[4][0]}))
    assert [line for _, line in since] == ["container:line 4", "system:pulling image"]
    problem(http.get(f"/v2/serverless/{endpoint['id']}/workers/wrk-missing/logs"), 404)
    problem(http.get(path, params={"tail": 5001}), 422)


# ── billing ────────────────────────────────────────────────────────────────────────────────────────────────


def test_serverless_billing_buckets_window_and_filter(
    emulator: RunPodRESTEmulator, http: httpx.Client
) -> None:
    account = emulator.account
    account.now = lambda: datetime(2026, 6, 3, 15, 30, tzinfo=UTC)
    account.charge("ep-a", datetime(2026, 6, 1, 10, tzinfo=UTC), gpu=2.0, disk=0.25, fee=0.5)
    account.charge("ep-a", datetime(2026, 6, 1, 23, 59, tzinfo=UTC), gpu=1.0)
    account.charge("ep-b", datetime(2026, 6, 2, 1, tzinfo=UTC), gpu=4.0)
    account.charge("ep-a", datetime(2026, 6, 3, 9, tzinfo=UTC), gpu=0.5)
    window = {"startTime": "2026-06-01T06:00:00Z", "endTime": "2026-06-02T12:00:00Z"}
    answer = http.get("/v2/billing/serverless", params=window).json()
    assert [(r["startTime"], r["serverlessId"], r["totalAmount"]) for r in answer["records"]] == [
        ("2026-06-01T00:00:00Z", "ep-a", 3.75),
        ("2026-06-02T00:00:00Z", "ep-b", 4.0),
    ]
    assert answer["records"][0]["gpuAmount"] == 3.0
    meta = answer["metadata"]
    assert meta["query"] == {  # the window snapped to whole buckets
        "startTime": "2026-06-01T00:00:00Z",
        "endTime": "2026-06-03T00:00:00Z",
        "bucketSize": "day",
        "serverlessId": None,
    }
    assert (meta["recordCount"], meta["uniqueServerlessCount"], meta["totals"]["totalAmount"]) == (2, 2, 7.75)
    last_two = http.get("/v2/billing/serverless", params={"lastN": 2, "serverlessId": "ep-a"}).json()
    assert [(r["startTime"], r["totalAmount"]) for r in last_two["records"]] == [
        ("2026-06-03T00:00:00Z", 0.5)
    ]
    assert last_two["metadata"]["query"]["startTime"] == "2026-06-02T00:00:00Z"
    hourly = http.get("/v2/billing/serverless", params={**window, "bucketSize": "hour"}).json()
    assert [r["startTime"] for r in hourly["records"]][:2] == ["2026-06-01T10:00:00Z", "2026-06-01T23:00:00Z"]
    problem(http.get("/v2/billing/serverless", params={**window, "lastN": 2}), 400)
