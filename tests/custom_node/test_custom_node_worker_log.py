"""The overlay's "Worker log": ``GET /runpod/worker-log/{job_id}`` reads the log of the worker that ran a
job, on the server, with the server's key, from the REST v2 path the local endpoint serves like RunPod.

Real pieces: the custom node's routes on an aiohttp app, the local endpoint with a real worker process
(``handler/handler.py`` under the RunPod SDK) attached to the ComfyUI stand-in.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from comfyui_standin import StandinComfyUI
from custom_node.config import RunPodConfig
from custom_node.jobs import JobTracker
from custom_node.worker_log import parse_events, rest_target
from local_endpoint import LocalEndpoint
from tests.conftest import attach_env
from tests.helpers import custom_node_app, raise_save
from tests.local_endpoint_fixtures import running_endpoint

KEY = "local-worker-log-key-0123456789"
RAISE = raise_save()


@pytest.fixture(scope="module")
def endpoint(comfy: StandinComfyUI) -> Iterator[LocalEndpoint]:
    """The conftest's endpoint, with a key (the custom node's routes send one)."""
    with running_endpoint(workers=1, worker_env=attach_env(comfy), api_key=KEY) as ep:
        yield ep


@pytest.fixture
async def client(
    endpoint: LocalEndpoint, tmp_path: Path
) -> AsyncIterator[tuple[TestClient[Any, Any], dict[str, Any]]]:
    holder = {"config": RunPodConfig(url=endpoint.url, api_key=KEY, source="test")}
    tracker = JobTracker(lambda: tmp_path / "output", poll_s=0.05)
    app = custom_node_app(lambda: holder["config"], tmp_path / "input", tracker)
    (tmp_path / "input").mkdir()
    async with TestClient(TestServer(app)) as test_client:
        yield test_client, holder
    await tracker.close()


async def _failed_job(test_client: TestClient[Any, Any]) -> str:
    response = await test_client.post("/runpod/queue", json={"prompt": RAISE})
    job_id = str((await response.json())["id"])
    for _ in range(600):
        body = await (await test_client.get(f"/runpod/status/{job_id}")).json()
        if body["done"]:
            assert body["status"] == "FAILED" and body["worker_id"]
            return job_id
        await asyncio.sleep(0.05)
    raise AssertionError("the job never ended")


async def test_a_failed_jobs_worker_log_comes_through_the_server_without_the_key(
    client: tuple[TestClient[Any, Any], dict[str, Any]],
) -> None:
    test_client, holder = client
    job_id = await _failed_job(test_client)

    response = await test_client.get(f"/runpod/worker-log/{job_id}")
    text = await response.text()

    assert response.status == 200, text
    body = json.loads(text)
    assert body["id"] == job_id and body["worker_id"].startswith("w1-")
    job_lines = [line["line"] for line in body["lines"] if line["job"]]
    assert any(f"[job {job_id}]" in line and "FAILED" in line for line in job_lines)
    assert any("kaput" in line["line"] for line in body["lines"])
    assert KEY not in text

    holder["config"] = RunPodConfig(url=holder["config"].url, api_key="wrong-key-0123456789", source="test")
    refused = await test_client.get(f"/runpod/worker-log/{job_id}")
    error = (await refused.json())["error"]
    assert refused.status == 502 and error["code"] == "WORKER_LOG_UNAVAILABLE"
    assert "the API key was refused" in error["message"] and "wrong-key" not in error["message"]


async def test_worker_log_refuses_unknown_jobs_and_foreign_hosts(
    client: tuple[TestClient[Any, Any], dict[str, Any]],
) -> None:
    test_client, _ = client
    unknown = await test_client.get("/runpod/worker-log/nope")
    assert unknown.status == 404 and (await unknown.json())["error"]["code"] == "UNKNOWN_JOB"
    rebound = await test_client.get("/runpod/worker-log/nope", headers={"Host": "evil.example:8188"})
    assert rebound.status == 403 and (await rebound.json())["error"]["code"] == "HOST_NOT_ALLOWED"


def test_rest_target_and_event_parsing() -> None:
    assert rest_target("https://api.runpod.ai/v2/abc123", {}) == ("https://api.runpod.io", "abc123")
    assert rest_target("http://127.0.0.1:8000/v2/local", {}) == ("http://127.0.0.1:8000", "local")
    assert rest_target("https://api.runpod.ai/v2/x", {"RUNPOD_REST_URL": "http://emu:1/"}) == (
        "http://emu:1",
        "x",
    )
    text = (
        'id: 1\ndata: {"ts": "t1", "source": "container", "line": "a"}\n\n'
        ': keep-alive\n\nid: 2\ndata: {"ts": "t2"'
    )
    assert parse_events(text) == [
        {"ts": "t1", "source": "container", "line": "a"}
    ]  # the cut event is dropped


async def test_worker_log_against_the_rest_emulator_reads_lines_and_names_refusals() -> None:
    from custom_node.worker_log import WorkerLogError, recent_worker_log
    from infra.runpod_rest import RunPodREST
    from tests.runpod_rest_emulator import Fault, running_emulator

    for emulator in running_emulator():
        with RunPodREST(emulator.api_key, url=emulator.url) as api:
            endpoint = api.save_endpoint(
                {
                    "name": "c",
                    "imageName": "img:1",
                    "gpuIds": "ADA_24",
                    "scalerType": "QUEUE_DELAY",
                    "scalerValue": 4,
                }
            )["id"]
        worker = emulator.account.add_worker(endpoint)
        for i in range(3):
            emulator.account.log(worker, f"line {i}")
        config = RunPodConfig(url=f"{emulator.url}/v2/{endpoint}", api_key=emulator.api_key, source="test")
        events = await recent_worker_log(config, worker, tail=2)
        assert [e["line"] for e in events] == ["line 1", "line 2"]
        for status, fault, words in (
            (403, Fault(403, "access denied", operation="getWorkerLogs"), "may not read worker logs"),
            (429, Fault(429, operation="getWorkerLogs", retry_after=5), "rate limited"),
        ):
            emulator.inject(fault)
            with pytest.raises(WorkerLogError) as exc:
                await recent_worker_log(config, worker)
            assert exc.value.status == status and words in str(exc.value)
        with pytest.raises(WorkerLogError) as gone:
            await recent_worker_log(config, "wrk-gone")
        assert gone.value.status == 404 and "the worker is gone" in str(gone.value)
        assert emulator.api_key not in str(gone.value)


async def test_an_endless_or_huge_answer_is_read_only_up_to_the_caps() -> None:
    """A broken or hostile endpoint cannot make the fetch (on ComfyUI's event loop) hold unbounded bytes."""
    from aiohttp import web

    from custom_node.worker_log import MAX_ERROR_BYTES, MAX_LOG_BYTES, WorkerLogError, recent_worker_log

    line = json.dumps({"ts": "2026-12-06T00:00:00Z", "source": "container", "line": "x" * 1000})

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        while True:  # never ends, never pauses
            await response.write(f"data: {line}\n\n".encode() * 64)

    async def huge_error(request: web.Request) -> web.Response:
        return web.Response(status=500, text="E" * (8 * MAX_ERROR_BYTES))

    app = web.Application()
    app.router.add_get("/v2/serverless/ep/workers/w1/logs", endless)
    app.router.add_get("/v2/serverless/ep/workers/w2/logs", huge_error)
    async with TestServer(app) as server:
        config = RunPodConfig(url=str(server.make_url("/v2/ep")), api_key="k-0123456789", source="test")
        env = {"RUNPOD_REST_URL": str(server.make_url("")).rstrip("/")}
        events = await recent_worker_log(config, "w1", env=env, max_s=5)
        assert 0 < len(events) <= MAX_LOG_BYTES // 1000
        with pytest.raises(WorkerLogError) as refused:
            await recent_worker_log(config, "w2", env=env)
        assert len(str(refused.value)) < 2 * MAX_ERROR_BYTES
