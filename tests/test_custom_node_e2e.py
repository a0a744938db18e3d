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
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from custom_node.config import RunPodConfig
from custom_node.jobs import JobTracker
from custom_node.routes import Deps, add_routes
from local_endpoint.endpoint import LocalEndpoint
from tests.helpers import pixel, png_bytes

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
async def node_app(endpoint: LocalEndpoint, tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    """The routes as the user's local ComfyUI would serve them (its own input/output dirs)."""
    config = RunPodConfig(url=endpoint.url, api_key=None, source="test", timeout_s=60)
    tracker = JobTracker(lambda: tmp_path / "output", poll_s=0.1)
    routes = web.RouteTableDef()
    add_routes(routes, Deps(lambda: config, lambda: tmp_path / "input", tracker))
    app = web.Application()
    app.add_routes(routes)
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
    import asyncio, importlib.util, json, sys
    from pathlib import Path
    import server, folder_paths
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    pack = Path(sys.argv[1])
    # As ComfyUI's nodes.load_custom_node does: a module named after the folder.
    spec = importlib.util.spec_from_file_location(
        "custom_nodes.comfy-runpod", pack / "__init__.py", submodule_search_locations=[str(pack)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
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


def test_the_folder_works_copied_alone_under_another_name(tmp_path: Path) -> None:
    pack = tmp_path / "ComfyUI" / "custom_nodes" / "comfy-runpod"
    shutil.copytree(REPO / "custom_node", pack, ignore=shutil.ignore_patterns("__pycache__", "node_modules"))
    fakes = tmp_path / "fakes"
    fakes.mkdir()
    (fakes / "server.py").write_text(
        "from aiohttp import web\n"
        "class PromptServer:\n"
        "    instance = None\n"
        "    def __init__(self):\n"
        "        self.routes = web.RouteTableDef()\n"
        "PromptServer.instance = PromptServer()\n"
    )
    user = tmp_path / "ComfyUI" / "user"
    user.mkdir()
    (user / "comfy-runpod.json").write_text(json.dumps({"endpoint_id": "abc", "api_key": "rpa_FILE"}))
    (fakes / "folder_paths.py").write_text(
        f"def get_input_directory(): return {str(tmp_path / 'in')!r}\n"
        f"def get_output_directory(): return {str(tmp_path / 'out')!r}\n"
        f"def get_user_directory(): return {str(user)!r}\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", COPIED_ALONE, str(pack)],
        cwd=tmp_path,
        env={"PYTHONPATH": str(fakes), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
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
        ]
    )
    assert "rpa_FILE" not in done.stdout + done.stderr


def test_outside_comfyui_the_package_registers_nothing() -> None:
    import custom_node

    assert custom_node.TRACKER is None
