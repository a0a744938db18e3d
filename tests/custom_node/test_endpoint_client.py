"""The endpoint client: retries, polling, structured errors, saving outputs safely."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from custom_node import endpoint_client
from custom_node.endpoint_client import EndpointClient, RetryPolicy, endpoint_url
from custom_node.errors import EndpointConfigError, EndpointError, EndpointHTTPError, JobFailed
from custom_node.inputs import input_files
from custom_node.job_error import JobError
from custom_node.outputs import save_outputs
from custom_node.workflow_file import load_workflow

FAST = RetryPolicy(attempts=4, base_s=0.01, max_s=0.05)


@pytest.fixture
async def fake_api() -> AsyncIterator[Callable[[web.Application], Any]]:
    servers: list[TestServer] = []

    async def serve(app: web.Application) -> str:
        server = TestServer(app)
        await server.start_server()
        servers.append(server)
        return str(server.make_url("/v2/ep"))

    yield serve
    for server in servers:
        await server.close()


def flaky(statuses: list[int], final: dict[str, Any], seen: list[dict[str, Any]]) -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        seen.append({"auth": request.headers.get("Authorization"), "body": await request.text()})
        if len(seen) <= len(statuses):
            return web.json_response(
                {"error": "slow down"}, status=statuses[len(seen) - 1], headers={"Retry-After": "0"}
            )
        return web.json_response(final)

    app = web.Application()
    app.router.add_route("*", "/v2/ep/{tail:.*}", handler)
    return app


async def test_429_and_503_are_retried_with_backoff(fake_api: Any) -> None:
    seen: list[dict[str, Any]] = []
    url = await fake_api(flaky([429, 503], {"id": "j1", "status": "IN_QUEUE"}, seen))
    async with EndpointClient(url, "KEY", retry=FAST) as client:
        assert await client.run({"workflow": {}}) == {"id": "j1", "status": "IN_QUEUE"}
    assert len(seen) == 3
    assert all(r["auth"] == "Bearer KEY" for r in seen)
    assert json.loads(seen[-1]["body"]) == {"input": {"workflow": {}}}


async def test_500_is_not_retried_for_run_but_is_for_status(fake_api: Any) -> None:
    seen: list[dict[str, Any]] = []
    url = await fake_api(flaky([500], {"id": "j1", "status": "COMPLETED"}, seen))
    async with EndpointClient(url, retry=FAST) as client:
        with pytest.raises(EndpointHTTPError) as info:
            await client.run({})
        assert info.value.status == 500
        assert (await client.status("j1"))["status"] == "COMPLETED"


async def test_retries_give_up_with_the_last_answer(fake_api: Any) -> None:
    seen: list[dict[str, Any]] = []
    url = await fake_api(flaky([429] * 10, {}, seen))
    async with EndpointClient(url, retry=FAST) as client:
        with pytest.raises(EndpointHTTPError, match="429"):
            await client.health()
    assert len(seen) == FAST.attempts


async def test_wait_polls_fast_then_backs_off_and_raises_on_failure(
    fake_api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[float] = []
    # The waits the client asks for, not wall-clock gaps (those depend on the machine's load).
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def recorded_sleep(delay: float) -> None:
        waits.append(delay)
        await real_sleep(delay)

    class ClientAsyncio:  # the client module's own view of asyncio, with its sleeps recorded
        sleep = staticmethod(recorded_sleep)

        def __getattr__(self, name: str) -> Any:
            return getattr(asyncio, name)

    monkeypatch.setattr(endpoint_client, "asyncio", ClientAsyncio())
    error = json.dumps(
        {"code": "EXECUTION_ERROR", "message": "node 3 raised", "details": [], "diagnostics": {}}
    )

    async def status(request: web.Request) -> web.Response:
        calls.append(time.monotonic())
        if len(calls) < 5:
            return web.json_response({"id": "j", "status": "IN_PROGRESS", "output": {"step": len(calls)}})
        return web.json_response({"id": "j", "status": "FAILED", "error": error})

    app = web.Application()
    app.router.add_get("/v2/ep/status/j", status)
    url = await fake_api(app)
    seen: list[dict[str, Any]] = []
    async with EndpointClient(url, retry=FAST) as client:
        with pytest.raises(JobFailed) as info:
            await client.wait("j", timeout_s=10, on_status=seen.append, first_poll_s=0.01)
    assert info.value.error.code == "EXECUTION_ERROR"
    assert [s["output"]["step"] for s in seen[:-1]] == [1, 2, 3, 4]
    assert len(calls) == 5 and waits[0] == 0.01
    assert all(b > a for a, b in itertools.pairwise(waits)), f"polling backs off: {waits}"


def test_decode_job_error_accepts_every_shape() -> None:
    ours = JobError.decode(json.dumps({"code": "TIMEOUT", "message": "late", "details": [{"node_id": "1"}]}))
    assert ours.code == "TIMEOUT" and ours.details == [{"node_id": "1"}]
    sdk = JobError.decode(json.dumps({"error_type": "<class 'ValueError'>", "error_message": "boom"}))
    assert (sdk.code, sdk.message) == ("WORKER_EXCEPTION", "boom")
    assert sdk.diagnostics["error_type"] == "<class 'ValueError'>"
    assert JobError.decode("worker died").message == "worker died"


def test_format_error_is_readable() -> None:
    text = JobError(
        **{
            "code": "VALIDATION_FAILED",
            "message": "2 problems",
            "details": [
                {
                    "node_id": "4",
                    "class_type": "CheckpointLoaderSimple",
                    "input": "ckpt_name",
                    "message": "not found",
                    "closest": ["sd15.safetensors"],
                },
                {"field": "timeout_s", "message": "must be > 0", "fix": "use seconds"},
            ],
            "diagnostics": {"log_tail": ["line 1", "line 2"]},
        }
    ).text()
    assert "VALIDATION_FAILED: 2 problems" in text
    assert "node 4 (CheckpointLoaderSimple) input ckpt_name: not found" in text
    assert "closest available: sd15.safetensors" in text
    assert "fix: use seconds" in text
    assert "| line 2" in text


def test_endpoint_url_prefers_the_override() -> None:
    assert endpoint_url("abc", {}) == "https://api.runpod.ai/v2/abc"
    assert endpoint_url(None, {"RUNPOD_ENDPOINT_ID": "xyz"}) == "https://api.runpod.ai/v2/xyz"
    assert (
        endpoint_url("abc", {"RUNPOD_ENDPOINT_URL": "http://127.0.0.1:8000/v2/local/"})
        == "http://127.0.0.1:8000/v2/local"
    )
    with pytest.raises(EndpointConfigError, match="RUNPOD_ENDPOINT_ID"):
        endpoint_url(None, {})


def test_api_key_is_not_in_the_repr() -> None:
    assert "SECRET" not in repr(EndpointClient("http://x", "SECRET"))


def test_ui_format_workflows_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "wf.json"
    path.write_text(json.dumps({"nodes": [], "links": [], "version": 0.4}))
    with pytest.raises(EndpointError, match=r"Export \(API\)"):
        load_workflow(path)


def test_input_names_keep_subfolders(tmp_path: Path) -> None:
    (tmp_path / "masks").mkdir()
    (tmp_path / "masks" / "a.png").write_bytes(b"A")
    (tmp_path / "b.png").write_bytes(b"B")
    entries = input_files(["masks/a.png", f"ref/b.png={tmp_path / 'b.png'}"], base=tmp_path)
    assert [e["name"] for e in entries] == ["masks/a.png", "ref/b.png"]
    assert base64.b64decode(entries[0]["image"]) == b"A"


async def test_outputs_are_saved_with_subfolders_and_traversal_refused(tmp_path: Path) -> None:
    output = {
        "outputs": [
            {
                "node_id": "3",
                "kind": "image",
                "filename": "a.png",
                "subfolder": "portraits",
                "data": base64.b64encode(b"png").decode(),
            },
            {"node_id": "7", "kind": "text", "text": "hello"},
        ]
    }
    files = await save_outputs(output, tmp_path / "job")
    assert (tmp_path / "job" / "portraits" / "a.png").read_bytes() == b"png"
    assert (tmp_path / "job" / "7.txt").read_text() == "hello"
    assert len(files) == 2
    hostile = {"outputs": [{"node_id": "1", "filename": "x.png", "subfolder": "../../etc", "data": "AA=="}]}
    with pytest.raises(EndpointError, match="refusing"):
        await save_outputs(hostile, tmp_path / "job2")
    assert not (tmp_path / "etc").exists()
