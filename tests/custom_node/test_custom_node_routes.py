"""The ``/runpod/...`` routes on a plain aiohttp app, against a scripted fake job API.

The fake API answers each job's ``/status`` polls from a script, so every state the
browser may see (queued, progress, completed, failed, cancelled, unreachable) is reached
deterministically and fast.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from custom_node.config import RunPodConfig, load_config
from custom_node.endpoint_client import EndpointClient, RetryPolicy
from custom_node.jobs import JobTracker, close_at_exit, install_shutdown_hooks
from tests.helpers import custom_node_app

KEY = "rpa_TOPSECRETKEY123"


@dataclass
class FakeApi:
    """RunPod's job API for one endpoint; ``scripts`` are the status bodies each job goes through."""

    scripts: list[list[dict[str, Any]]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    auth: list[str | None] = field(default_factory=list)
    statuses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    cancelled: list[str] = field(default_factory=list)
    run_status: int = 200

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v2/ep/run", self.run)
        app.router.add_get("/v2/ep/status/{id}", self.status)
        app.router.add_post("/v2/ep/cancel/{id}", self.cancel)
        return app

    async def run(self, request: web.Request) -> web.Response:
        self.auth.append(request.headers.get("Authorization"))
        if self.run_status != 200:
            return web.json_response({"error": "Unauthorized"}, status=self.run_status)
        self.runs.append(await request.json())
        job_id = f"job-{len(self.runs)}"
        self.statuses[job_id] = self.scripts.pop(0) if self.scripts else [{"status": "IN_QUEUE"}]
        return web.json_response({"id": job_id, "status": "IN_QUEUE"})

    async def status(self, request: web.Request) -> web.Response:
        job_id = request.match_info["id"]
        script = self.statuses[job_id]
        body = script.pop(0) if len(script) > 1 else script[0]
        return web.json_response({"id": job_id, **body})

    async def cancel(self, request: web.Request) -> web.Response:
        job_id = request.match_info["id"]
        self.cancelled.append(job_id)
        self.statuses[job_id] = [{"status": "CANCELLED"}]
        return web.json_response({"id": job_id, "status": "CANCELLED"})


@dataclass
class Harness:
    client: TestClient[Any, Any]
    api: FakeApi
    input_dir: Path
    output_dir: Path
    config: RunPodConfig
    answers: list[str] = field(default_factory=list)

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        response = await self.client.request(method, path, **kwargs)
        text = await response.text()
        self.answers.append(text)
        return response.status, json.loads(text)

    async def until_done(self, job_id: str) -> dict[str, Any]:
        for _ in range(400):
            status, body = await self.call("GET", f"/runpod/status/{job_id}")
            assert status == 200, body
            if body["done"]:
                return dict(body)
            await asyncio.sleep(0.01)
        raise AssertionError(f"job {job_id} never ended: {body}")


def fast_client(config: RunPodConfig) -> EndpointClient:
    return EndpointClient(config.url or "", config.api_key, retry=RetryPolicy(attempts=2, base_s=0.01))


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    api = FakeApi()
    async with TestServer(api.app()) as api_server:
        config = RunPodConfig(url=str(api_server.make_url("/v2/ep")), api_key=KEY, source="test")
        tracker = JobTracker(lambda: tmp_path / "output", fast_client, poll_s=0.02)
        holder = {"config": config}
        app = custom_node_app(lambda: holder["config"], tmp_path / "input", tracker)
        (tmp_path / "input").mkdir()
        async with TestClient(TestServer(app)) as client:
            h = Harness(client, api, tmp_path / "input", tmp_path / "output", config)
            h.holder = holder  # type: ignore[attr-defined]
            yield h
            for answer in h.answers:
                assert KEY not in answer
        await tracker.close()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


JSON = {"Content-Type": "application/json"}
PROMPT = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "masks/in.png"}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "final"}},
    "4": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    "5": {"class_type": "LoadImageWithSubfolder", "inputs": {"subfolder": "sets/a", "image": "s.png"}},
}


def output_entry(node_id: str, filename: str, data: bytes, subfolder: str = "") -> dict[str, Any]:
    return {
        "node_id": node_id,
        "kind": "image",
        "filename": filename,
        "subfolder": subfolder,
        "type": "output",
        "mime": "image/png",
        "data": b64(data),
    }


async def test_queue_uploads_inputs_follows_progress_and_saves_results_deepest_first(
    harness: Harness,
) -> None:
    (harness.input_dir / "masks").mkdir()
    (harness.input_dir / "masks" / "in.png").write_bytes(b"IN")
    (harness.input_dir / "sets" / "a").mkdir(parents=True)
    (harness.input_dir / "sets" / "a" / "s.png").write_bytes(b"S")
    progress = {
        "node": "2",
        "class_type": "ImageInvert",
        "step": 1,
        "max": 2,
        "nodes_done": 1,
        "nodes_total": 3,
    }
    harness.api.scripts.append(
        [
            {"status": "IN_QUEUE"},
            {"status": "IN_PROGRESS", "output": progress},
            {
                "status": "COMPLETED",
                "output": {
                    "outputs": [
                        output_entry("4", "preview.png", b"P"),
                        output_entry("3", "final_00001_.png", b"F", subfolder="sub"),
                        {"node_id": "2", "kind": "text", "text": "hello"},
                    ]
                },
            },
        ]
    )
    status, queued = await harness.call(
        "POST", "/runpod/queue", json={"prompt": PROMPT, "workflow": {"nodes": []}}
    )
    assert status == 200, queued
    assert queued["id"] == "job-1" and queued["inputs"] == ["masks/in.png", "sets/a/s.png"]
    [sent] = harness.api.runs
    assert sent["input"]["workflow"] == PROMPT
    assert sent["input"]["images"] == [
        {"name": "masks/in.png", "image": b64(b"IN")},
        {"name": "sets/a/s.png", "image": b64(b"S")},
    ]
    assert harness.api.auth == [f"Bearer {KEY}"]

    seen = []
    for _ in range(400):
        _, body = await harness.call("GET", "/runpod/status/job-1")
        seen.append(body)
        if body["done"]:
            break
        await asyncio.sleep(0.005)
    assert any(b["progress"] == progress and b["status"] == "IN_PROGRESS" for b in seen)
    assert seen[-1]["status"] == "COMPLETED" and seen[-1]["done"]

    status, results = await harness.call("GET", "/runpod/results/job-1")
    assert status == 200 and results["status"] == "COMPLETED"
    outputs = results["outputs"]
    assert [o["node_id"] for o in outputs] == ["3", "2", "4"]
    assert [o["depth"] for o in outputs] == [2, 1, 1]
    final = outputs[0]
    assert final["subfolder"] == "runpod/job-1/sub" and final["filename"] == "final_00001_.png"
    assert final["url"] == "/view?filename=final_00001_.png&subfolder=runpod%2Fjob-1%2Fsub&type=output"
    assert (harness.output_dir / "runpod" / "job-1" / "sub" / "final_00001_.png").read_bytes() == b"F"
    assert outputs[1]["text"] == "hello"
    assert (harness.output_dir / "runpod" / "job-1" / "2.txt").read_text() == "hello"


async def test_a_failed_job_returns_the_structured_error(harness: Harness) -> None:
    error = {
        "code": "VALIDATION_FAILED",
        "message": "1 problem",
        "details": [{"node_id": "1", "class_type": "LoadImage", "input": "image", "message": "missing"}],
    }
    harness.api.scripts.append([{"status": "FAILED", "error": json.dumps(error)}])
    _, queued = await harness.call("POST", "/runpod/queue", json={"prompt": PROMPT})
    done = await harness.until_done(queued["id"])
    assert done["status"] == "FAILED" and done["error"]["code"] == "VALIDATION_FAILED"
    status, results = await harness.call("GET", f"/runpod/results/{queued['id']}")
    assert status == 200 and results["status"] == "FAILED"
    assert results["error"]["details"][0]["node_id"] == "1"
    assert "node 1 (LoadImage) input image: missing" in results["text"]


async def test_results_before_the_end_are_409_and_cancel_reaches_the_endpoint(harness: Harness) -> None:
    harness.api.scripts.append([{"status": "IN_PROGRESS"}])
    _, queued = await harness.call("POST", "/runpod/queue", json={"prompt": PROMPT})
    status, body = await harness.call("GET", f"/runpod/results/{queued['id']}")
    assert status == 409 and body["error"]["code"] == "NOT_DONE"
    status, body = await harness.call("POST", f"/runpod/cancel/{queued['id']}", headers=JSON)
    assert status == 200 and body["status"] == "CANCELLED"
    assert harness.api.cancelled == [queued["id"]]
    done = await harness.until_done(queued["id"])
    assert done["status"] == "CANCELLED" and done["error"]["code"] == "CANCELLED"


async def test_a_cycle_is_refused_before_anything_is_sent(harness: Harness) -> None:
    prompt = {
        "1": {"class_type": "A", "inputs": {"x": ["2", 0]}},
        "2": {"class_type": "B", "inputs": {"x": ["1", 0]}},
    }
    status, body = await harness.call("POST", "/runpod/queue", json={"prompt": prompt})
    assert status == 400 and body["error"]["code"] == "GRAPH_CYCLE"
    assert "cycle" in body["error"]["message"] and harness.api.runs == []


@pytest.mark.parametrize(
    "payload", [b"not json", b"[]", b'{"prompt": {}}', b'{"prompt": {"1": {"inputs": {}}}}']
)
async def test_bad_bodies_are_400(harness: Harness, payload: bytes) -> None:
    status, body = await harness.call("POST", "/runpod/queue", data=payload, headers=JSON)
    assert status == 400 and body["error"]["code"] == "BAD_REQUEST"


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_posts_a_cross_site_page_could_send_unasked_are_refused(
    harness: Harness, content_type: str | None
) -> None:
    """Only JSON: a "simple" cross-site POST (no CORS preflight) must not queue or cancel paid jobs."""
    headers = {"Content-Type": content_type} if content_type else {}
    body = json.dumps({"prompt": PROMPT}).encode()
    status, answer = await harness.call("POST", "/runpod/queue", data=body, headers=headers)
    assert status == 415 and answer["error"]["code"] == "NOT_JSON"
    assert harness.api.runs == []
    harness.api.scripts.append([{"status": "IN_PROGRESS"}])
    _, queued = await harness.call("POST", "/runpod/queue", json={"prompt": PROMPT})
    status, answer = await harness.call("POST", f"/runpod/cancel/{queued['id']}", headers=headers)
    assert status == 415 and harness.api.cancelled == []


async def test_an_unknown_job_is_404(harness: Harness) -> None:
    for method, path in [
        ("GET", "/runpod/status/nope"),
        ("GET", "/runpod/results/nope"),
        ("POST", "/runpod/cancel/nope"),
    ]:
        status, body = await harness.call(method, path, headers=JSON)
        assert status == 404 and body["error"]["code"] == "UNKNOWN_JOB"


async def test_a_refused_key_is_reported_without_the_key(harness: Harness) -> None:
    harness.api.run_status = 401
    status, body = await harness.call("POST", "/runpod/queue", json={"prompt": PROMPT})
    assert status == 502 and body["error"]["code"] == "UNAUTHORIZED"


async def test_an_unreachable_endpoint_is_502(harness: Harness, unused_tcp_port: int) -> None:
    harness.holder["config"] = RunPodConfig(url=f"http://127.0.0.1:{unused_tcp_port}/v2/x", api_key=KEY)  # type: ignore[attr-defined]
    status, body = await harness.call("POST", "/runpod/queue", json={"prompt": PROMPT})
    assert status == 502 and body["error"]["code"] == "ENDPOINT_UNREACHABLE"


async def test_config_says_whether_an_endpoint_is_set_never_the_key(harness: Harness) -> None:
    status, body = await harness.call("GET", "/runpod/config")
    assert status == 200 and body["configured"] is True and body["has_api_key"] is True
    harness.holder["config"] = load_config({}, [])  # type: ignore[attr-defined]
    _, body = await harness.call("GET", "/runpod/config")
    assert body["configured"] is False and "RUNPOD_ENDPOINT_ID" in body["problem"]
    status, body = await harness.call("POST", "/runpod/queue", json={"prompt": PROMPT})
    assert status == 503 and body["error"]["code"] == "NOT_CONFIGURED"


async def test_an_output_name_leaving_the_job_folder_is_an_error(harness: Harness) -> None:
    harness.api.scripts.append(
        [
            {
                "status": "COMPLETED",
                "output": {"outputs": [output_entry("3", "x.png", b"x", subfolder="../..")]},
            }
        ]
    )
    _, queued = await harness.call("POST", "/runpod/queue", json={"prompt": PROMPT})
    done = await harness.until_done(queued["id"])
    assert done["status"] == "ERROR" and done["error"]["code"] == "SAVE_FAILED"
    assert "refusing" in done["error"]["message"]
    assert not list(harness.output_dir.parent.glob("*.png"))


async def test_selected_output_nodes_send_only_their_branch(harness: Harness) -> None:
    """ComfyUI's "Queue selected output nodes" (``partial_execution_targets``) on RunPod."""
    (harness.input_dir / "masks").mkdir()
    (harness.input_dir / "masks" / "in.png").write_bytes(b"IN")
    (harness.input_dir / "sets" / "a").mkdir(parents=True)
    (harness.input_dir / "sets" / "a" / "s.png").write_bytes(b"S")
    status, queued = await harness.call(
        "POST", "/runpod/queue", json={"prompt": PROMPT, "partial_execution_targets": ["3"]}
    )
    assert status == 200, queued
    # Node 3 needs 2 and 1; the preview (4) and the unrelated loader (5) and its file stay home.
    [sent] = harness.api.runs
    assert sent["input"]["workflow"] == {k: PROMPT[k] for k in ("1", "2", "3")}
    assert queued["inputs"] == ["masks/in.png"]
    assert [image["name"] for image in sent["input"]["images"]] == ["masks/in.png"]

    status, _ = await harness.call(
        "POST", "/runpod/queue", json={"prompt": PROMPT, "partial_execution_targets": []}
    )
    assert status == 200 and harness.api.runs[-1]["input"]["workflow"] == PROMPT


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        (["99"], "none of the selected output nodes (99)"),
        ("3", "must be a list"),
        ([{"id": 3}], "must be a list"),
    ],
)
async def test_selected_output_nodes_that_are_not_in_the_workflow_are_400(
    harness: Harness, targets: Any, message: str
) -> None:
    status, body = await harness.call(
        "POST", "/runpod/queue", json={"prompt": PROMPT, "partial_execution_targets": targets}
    )
    assert status == 400 and body["error"]["code"] == "BAD_REQUEST"
    assert message in body["error"]["message"] and harness.api.runs == []


async def test_stopping_the_web_app_stops_following_jobs_and_names_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    api = FakeApi(scripts=[[{"status": "IN_PROGRESS"}]])
    registered: list[tuple[Any, ...]] = []
    async with TestServer(api.app()) as api_server:
        config = RunPodConfig(url=str(api_server.make_url("/v2/ep")), api_key=KEY, source="test")
        tracker = JobTracker(lambda: tmp_path / "output", fast_client, poll_s=0.02)
        app = custom_node_app(lambda: config, tmp_path, tracker)
        install_shutdown_hooks(
            tracker, app, asyncio.get_running_loop(), at_exit=lambda *a: registered.append(a)
        )
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        async with aiohttp.ClientSession() as session:
            response = await session.post(f"http://127.0.0.1:{port}/runpod/queue", json={"prompt": PROMPT})
            job_id = (await response.json())["id"]
        await asyncio.sleep(0.1)
        [job] = tracker.following()
        with caplog.at_level("WARNING", logger="comfy_runpod.jobs"):
            await runner.cleanup()  # what a host that shuts its aiohttp app down does
        assert job.task is not None and job.task.cancelled() and tracker.following() == []
        assert f"stopped following RunPod job {job_id} (IN_PROGRESS)" in caplog.text
        assert f"output/runpod/{job_id}" in caplog.text
        # ComfyUI 0.3.64 never cleans its app up: the exit hook is registered as well.
        assert [a[0] for a in registered] == [close_at_exit] and registered[0][1] is tracker
