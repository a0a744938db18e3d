"""DNS rebinding: the ``/runpod/...`` routes answer only requests for this server's own names.

A rebound page talks to ComfyUI as its own origin, so ``Origin`` and ``Host`` agree and ComfyUI's
origin check passes it; only the ``Host`` (the attacker's domain) gives it away. The routes run
on a plain aiohttp app, asked over HTTP with the forged ``Host`` a rebound browser would send.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from custom_node.config import RunPodConfig, load_config
from custom_node.hosts import ALLOWED_HOSTS_ENV
from custom_node.jobs import JobTracker
from custom_node.routes import Deps, add_routes

#: ComfyUI's ``--listen 0.0.0.0,comfy.lan``: the wildcard names nothing, the name is this server's.
LISTEN = ("0.0.0.0", "comfy.lan")  # noqa: S104
PROMPT = {"1": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}}}


class Api:
    """RunPod's job API, counting the jobs it was sent."""

    def __init__(self) -> None:
        self.runs: list[Any] = []

    def app(self) -> web.Application:
        app = web.Application()

        async def run(request: web.Request) -> web.Response:
            self.runs.append(await request.json())
            return web.json_response({"id": f"job-{len(self.runs)}", "status": "IN_QUEUE"})

        async def status(request: web.Request) -> web.Response:
            return web.json_response({"id": request.match_info["id"], "status": "IN_QUEUE"})

        app.router.add_post("/v2/ep/run", run)
        app.router.add_get("/v2/ep/status/{id}", status)
        return app


class Routes:
    def __init__(self, client: TestClient[Any, Any], api: Api, holder: dict[str, RunPodConfig]) -> None:
        self.client, self.api, self.holder = client, api, holder

    async def call(self, method: str, path: str, host: str, **kwargs: Any) -> tuple[int, Any]:
        response = await self.client.request(method, path, headers={"Host": host}, **kwargs)
        return response.status, await response.json()

    async def queue(self, host: str) -> tuple[int, Any]:
        return await self.call("POST", "/runpod/queue", host, json={"prompt": PROMPT})


@pytest.fixture
async def routes(tmp_path: Path) -> AsyncIterator[Routes]:
    api = Api()
    async with TestServer(api.app()) as api_server:
        url = str(api_server.make_url("/v2/ep"))
        holder = {"config": load_config({"RUNPOD_ENDPOINT_URL": url, "RUNPOD_API_KEY": "rpa_KEY"})}
        tracker = JobTracker(lambda: tmp_path / "output", poll_s=0.05)
        table = web.RouteTableDef()
        deps = Deps(lambda: holder["config"], lambda: tmp_path, tracker, listen=LISTEN)
        add_routes(table, deps)
        app = web.Application()
        app.add_routes(table)
        async with TestClient(TestServer(app)) as client:
            yield Routes(client, api, holder)
        await tracker.close()


@pytest.mark.parametrize(
    "host",
    [
        "evil.example:8188",
        "evil.example",
        "localhost.evil.example:8188",
        "comfy.lan.evil",
        "localhost.localdomain",
    ],
)
async def test_a_rebound_name_can_neither_queue_nor_read(routes: Routes, host: str) -> None:
    status, body = await routes.queue(host)
    assert status == 403 and body["error"]["code"] == "HOST_NOT_ALLOWED"
    assert ALLOWED_HOSTS_ENV in body["error"]["message"]
    assert routes.api.runs == [], "nothing reached the endpoint"
    for method, path in [
        ("GET", "/runpod/config"),
        ("GET", "/runpod/status/job-1"),
        ("GET", "/runpod/results/job-1"),
        ("POST", "/runpod/cancel/job-1"),
    ]:
        status, body = await routes.call(method, path, host, json={})
        assert status == 403 and body["error"]["code"] == "HOST_NOT_ALLOWED", (method, path)


async def test_a_job_queued_under_the_servers_name_cannot_be_read_under_another(routes: Routes) -> None:
    status, queued = await routes.queue("127.0.0.1:8188")
    assert status == 200
    status, _ = await routes.call("GET", f"/runpod/status/{queued['id']}", "127.0.0.1:8188")
    assert status == 200
    status, body = await routes.call("GET", f"/runpod/status/{queued['id']}", "attacker.example:8188")
    assert status == 403 and "endpoint" not in body and queued["id"] not in str(body)


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1:8188",
        "localhost:8188",
        "LOCALHOST",
        "[::1]:8188",
        "192.168.1.20:8188",
        "comfy.lan:8188",
        "comfy.lan.",
    ],
)
async def test_ip_addresses_loopback_and_listen_names_are_answered(routes: Routes, host: str) -> None:
    status, body = await routes.call("GET", "/runpod/config", host)
    assert status == 200 and body["configured"] is True
    status, queued = await routes.queue(host)
    assert status == 200, queued


async def test_a_missing_host_header_is_refused(routes: Routes) -> None:
    status, body = await routes.call("GET", "/runpod/config", "")
    assert status == 403 and body["error"]["code"] == "HOST_NOT_ALLOWED"


async def test_the_setting_adds_names(routes: Routes, tmp_path: Path) -> None:
    assert (await routes.call("GET", "/runpod/config", "mybox.local:8188"))[0] == 403
    url = routes.holder["config"].url or ""
    env = {"RUNPOD_ENDPOINT_URL": url, ALLOWED_HOSTS_ENV: "mybox.local, comfy.example.com"}
    routes.holder["config"] = load_config(env)
    for host in ("mybox.local:8188", "comfy.example.com"):
        assert (await routes.call("GET", "/runpod/config", host))[0] == 200, host
    assert (await routes.call("GET", "/runpod/config", "evil.example"))[0] == 403
    # The same from comfy-runpod.json.
    (tmp_path / "comfy-runpod.json").write_text(
        f'{{"endpoint_url": "{url}", "allowed_hosts": ["proxy.example"]}}'
    )
    routes.holder["config"] = load_config({}, [tmp_path / "comfy-runpod.json"])
    assert (await routes.call("GET", "/runpod/config", "proxy.example"))[0] == 200
    assert (await routes.call("GET", "/runpod/config", "mybox.local"))[0] == 403
