"""The custom node end to end: its routes, the local endpoint, real workers, the ComfyUI stand-in.

Plus the packaging promise: the folder copied alone under another name into a ComfyUI-like
tree imports with relative imports and registers its routes on ``PromptServer.instance``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from custom_node.config import RunPodConfig
from custom_node.jobs import JobTracker
from local_endpoint.endpoint import LocalEndpoint
from tests.helpers import REPO, custom_node_app, pixel, png_bytes, run_in_repo


@pytest.fixture
async def node_app(endpoint: LocalEndpoint, tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    """The routes as the user's local ComfyUI would serve them (its own input/output dirs)."""
    config = RunPodConfig(url=endpoint.url, api_key=endpoint.api_key, source="test", timeout_s=60)
    tracker = JobTracker(lambda: tmp_path / "output", poll_s=0.1)
    app = custom_node_app(lambda: config, tmp_path / "input", tracker)
    async with TestClient(TestServer(app)) as client:
        yield client
    await tracker.close()


async def finished(client: TestClient[Any, Any], job_id: str) -> dict[str, Any]:
    for _ in range(600):
        body: dict[str, Any] = await (await client.get(f"/runpod/status/{job_id}")).json()
        if body["done"]:
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not end: {body}")


async def test_a_local_workflow_runs_on_the_endpoint_and_lands_in_the_output_folder(
    node_app: TestClient[Any, Any], tmp_path: Path
) -> None:
    (tmp_path / "input" / "masks").mkdir(parents=True)
    (tmp_path / "input" / "masks" / "green.png").write_bytes(png_bytes((0, 255, 0)))
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "masks/green.png"}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "inv"}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "orig"}},
    }
    response = await node_app.post("/runpod/queue", json={"prompt": prompt, "workflow": {}})
    queued = await response.json()
    assert response.status == 200, queued
    assert queued["inputs"] == ["masks/green.png"]
    assert (await finished(node_app, queued["id"]))["status"] == "COMPLETED"
    results = await (await node_app.get(f"/runpod/results/{queued['id']}")).json()
    first, second = results["outputs"]
    assert (first["node_id"], second["node_id"]) == ("3", "4")
    saved = tmp_path / "output" / first["subfolder"] / first["filename"]
    assert first["subfolder"] == f"runpod/{queued['id']}"
    assert pixel(base64.b64encode(saved.read_bytes()).decode()) == (255, 0, 255)
    assert first["url"].startswith("/view?filename=inv_")


async def test_queue_selected_output_nodes_runs_only_that_branch_on_the_worker(
    node_app: TestClient[Any, Any], tmp_path: Path
) -> None:
    (tmp_path / "input").mkdir(parents=True)
    (tmp_path / "input" / "green.png").write_bytes(png_bytes((0, 255, 0)))
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "green.png"}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "inv"}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "orig"}},
    }
    body = {"prompt": prompt, "partial_execution_targets": ["4"]}
    queued = await (await node_app.post("/runpod/queue", json=body)).json()
    assert (await finished(node_app, queued["id"]))["status"] == "COMPLETED"
    results = await (await node_app.get(f"/runpod/results/{queued['id']}")).json()
    assert [(o["node_id"], o["filename"][:5]) for o in results["outputs"]] == [("4", "orig_")]
    assert [p.name[:5] for p in (tmp_path / "output" / "runpod" / queued["id"]).iterdir()] == ["orig_"]


async def test_a_missing_input_comes_back_as_the_workers_structured_error(
    node_app: TestClient[Any, Any],
) -> None:
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "nowhere.png"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
    }
    queued = await (await node_app.post("/runpod/queue", json={"prompt": prompt})).json()
    assert (await finished(node_app, queued["id"]))["status"] == "FAILED"
    results = await (await node_app.get(f"/runpod/results/{queued['id']}")).json()
    assert results["error"]["code"] == "VALIDATION_FAILED"
    assert results["error"]["details"][0]["type"] == "input_file_missing"
    assert "node 1 (LoadImage)" in results["text"]


COPIED_ALONE = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path
    import server, folder_paths, nodes
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    module = nodes.load_custom_node(Path(sys.argv[1]))
    assert module.NODE_CLASS_MAPPINGS == {} and module.WEB_DIRECTORY == "./web"
    assert "custom_node" not in sys.modules, "the pack must not import the repository's package"

    async def main():
        app = web.Application()
        app.add_routes(server.PromptServer.instance.routes)
        async with TestClient(TestServer(app)) as client:
            config = await (await client.get("/runpod/config")).json()
            status = (await client.get("/runpod/status/x")).status
        print(json.dumps({"config": config, "status": status,
                          "paths": sorted(r.path for r in server.PromptServer.instance.routes)}))
    asyncio.run(main())
    """
)


# As ComfyUI's nodes.load_custom_node does: a module named after the folder, imported as a package.
FAKE_NODES_PY = textwrap.dedent(
    """
    import importlib.util, sys

    def load_custom_node(pack):
        spec = importlib.util.spec_from_file_location(
            "custom_nodes." + pack.name, pack / "__init__.py", submodule_search_locations=[str(pack)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module
    """
)


def copy_pack_alone(tmp_path: Path, server_py: str, user_dir: Path | None) -> tuple[Path, Path]:
    """``custom_node/`` copied alone into a ComfyUI tree, and ``server``/``folder_paths``/``nodes`` fakes to
    load it."""
    pack = tmp_path / "ComfyUI" / "custom_nodes" / "comfy-runpod"
    shutil.copytree(REPO / "custom_node", pack, ignore=shutil.ignore_patterns("__pycache__", "node_modules"))
    fakes = tmp_path / "fakes"
    fakes.mkdir()
    (fakes / "server.py").write_text(server_py)
    (fakes / "nodes.py").write_text(FAKE_NODES_PY)
    (fakes / "folder_paths.py").write_text(
        f"def get_input_directory(): return {str(tmp_path / 'in')!r}\n"
        f"def get_output_directory(): return {str(tmp_path / 'out')!r}\n"
        f"def get_user_directory(): return {str(user_dir) if user_dir else None!r}\n"
    )
    return pack, fakes


def run_in_fake_comfyui(tmp_path: Path, fakes: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_in_repo(
        [sys.executable, *args], {"PYTHONPATH": str(fakes), "PATH": "/usr/bin:/bin"}, timeout=60, cwd=tmp_path
    )


def test_the_folder_works_copied_alone_under_another_name(tmp_path: Path) -> None:
    user = tmp_path / "ComfyUI" / "user"
    user.mkdir(parents=True)
    (user / "comfy-runpod.json").write_text(json.dumps({"endpoint_id": "abc", "api_key": "rpa_FILE"}))
    pack, fakes = copy_pack_alone(
        tmp_path,
        "from aiohttp import web\n"
        "class PromptServer:\n"
        "    instance = None\n"
        "    def __init__(self):\n"
        "        self.routes = web.RouteTableDef()\n"
        "PromptServer.instance = PromptServer()\n",
        user,
    )
    done = run_in_fake_comfyui(tmp_path, fakes, "-c", COPIED_ALONE, str(pack))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["config"] == {
        "configured": True,
        "endpoint": "https://api.runpod.ai/v2/abc",
        "has_api_key": True,
        "source": str(user / "comfy-runpod.json"),
        "problem": None,
    }
    assert report["status"] == 404
    assert report["paths"] == sorted(
        [
            "/runpod/config",
            "/runpod/queue",
            "/runpod/status/{job_id}",
            "/runpod/results/{job_id}",
            "/runpod/cancel/{job_id}",
            "/runpod/worker-log/{job_id}",
        ]
    )
    assert "rpa_FILE" not in done.stdout + done.stderr


def test_outside_comfyui_the_package_registers_nothing() -> None:
    import custom_node

    assert custom_node.TRACKER is None


# ComfyUI 0.3.64's main.py in miniature: PromptServer(loop) exists before the custom nodes are
# imported; the server runs in loop.run_until_complete; Ctrl+C (KeyboardInterrupt) ends it,
# main prints "Stopped server" and the process exits without cleaning up the aiohttp app.
CTRL_C_IN_COMFYUI = textwrap.dedent(
    """
    import asyncio, logging, os, sys
    from pathlib import Path
    from aiohttp import web
    import server, nodes

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server.PromptServer.instance = server.PromptServer(loop)

    async def run(request):  # a RunPod endpoint whose job never ends
        return web.json_response({"id": "job-7", "status": "IN_QUEUE"})

    async def status(request):
        return web.json_response({"id": "job-7", "status": "IN_PROGRESS"})

    async def main():
        endpoint = web.Application()
        endpoint.router.add_post("/v2/ep/run", run)
        endpoint.router.add_get("/v2/ep/status/{id}", status)
        endpoint_runner = web.AppRunner(endpoint)
        await endpoint_runner.setup()
        await web.TCPSite(endpoint_runner, "127.0.0.1", 0).start()
        os.environ["RUNPOD_ENDPOINT_URL"] = f"http://127.0.0.1:{endpoint_runner.addresses[0][1]}/v2/ep"

        nodes.load_custom_node(Path(sys.argv[1]))

        app = server.PromptServer.instance.app
        app.add_routes(server.PromptServer.instance.routes)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        body = b'{"prompt": {"1": {"class_type": "SaveImage", "inputs": {}}}}'
        writer.write(b"POST /runpod/queue HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n"
                     b"Content-Type: application/json\\r\\nContent-Length: %d\\r\\n"
                     b"Connection: close\\r\\n\\r\\n%s" % (len(body), body))
        print((await reader.read()).decode().splitlines()[-1], flush=True)
        writer.close()
        await asyncio.sleep(0.3)  # the job is being followed
        raise KeyboardInterrupt  # Ctrl+C

    try:
        loop.run_until_complete(main())
    except KeyboardInterrupt:
        print("Stopped server", flush=True)
    """
)


def test_ctrl_c_in_comfyui_stops_following_jobs_and_names_them(tmp_path: Path) -> None:
    pack, fakes = copy_pack_alone(
        tmp_path,
        "from aiohttp import web\n"
        "class PromptServer:\n"
        "    instance = None\n"
        "    def __init__(self, loop):\n"
        "        self.loop = loop\n"
        "        self.app = web.Application()\n"
        "        self.routes = web.RouteTableDef()\n",
        None,
    )
    done = run_in_fake_comfyui(tmp_path, fakes, "-X", "dev", "-c", CTRL_C_IN_COMFYUI, str(pack))
    assert done.returncode == 0, done.stderr[-3000:]
    assert '"id": "job-7"' in done.stdout and "Stopped server" in done.stdout
    assert "stopped following RunPod job job-7 (IN_PROGRESS)" in done.stderr
    assert "output/runpod/job-7" in done.stderr
    # The follow-up task and its HTTP session were closed, not dropped.
    assert "Task was destroyed" not in done.stderr and "Unclosed" not in done.stderr
