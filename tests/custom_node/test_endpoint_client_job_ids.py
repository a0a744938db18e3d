"""``invoke run`` names a folder after the job id the endpoint answers: a hostile or broken
endpoint (a wrong ``RUNPOD_ENDPOINT_URL``, a proxy) must not make it write outside ``--out``.

The task runs as from the terminal against a fake job API served from a thread, which answers
``/run`` with the id under test and ``/status`` with a completed job carrying one image.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from invoke.context import Context
from invoke.exceptions import Exit

from tasks import endpoint as endpoint_tasks

WORKFLOW = {"1": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}}}


@dataclass
class FakeApi:
    """A job API whose ``/run`` answers ``job_id``; it records every request path."""

    job_id: Any = "job-1"
    paths: list[str] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()

        async def run(request: web.Request) -> web.Response:
            self.paths.append(request.path)
            return web.json_response({"id": self.job_id, "status": "IN_QUEUE"})

        async def status(request: web.Request) -> web.Response:
            self.paths.append(request.path)
            image = {"node_id": "1", "kind": "image", "filename": "x.png", "subfolder": "", "data": ""}
            image["data"] = base64.b64encode(b"png bytes").decode()
            return web.json_response(
                {"id": self.job_id, "status": "COMPLETED", "output": {"outputs": [image]}}
            )

        app.router.add_post("/v2/ep/run", run)
        app.router.add_get("/v2/ep/status/{tail:.*}", status)
        return app


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApi]:
    """The fake API on 127.0.0.1 in its own thread; RUNPOD_ENDPOINT_URL points at it."""
    fake = FakeApi()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(fake.app())
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("RUNPOD_ENDPOINT_URL", f"http://127.0.0.1:{port}/v2/ep")
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def invoke_run(tmp_path: Path) -> Path:
    """``invoke run --workflow wf.json --out <tmp>/box/out``; returns the --out folder."""
    workflow = tmp_path / "wf.json"
    workflow.write_text(json.dumps(WORKFLOW))
    out = tmp_path / "box" / "out"
    endpoint_tasks.run(Context(), workflow=str(workflow), out=str(out), timeout=30)
    return out


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


def test_a_plain_job_id_saves_under_out(api: FakeApi, tmp_path: Path) -> None:
    out = invoke_run(tmp_path)
    assert (out / "job-1" / "x.png").read_bytes() == b"png bytes"


@pytest.mark.parametrize(
    "job_id",
    ["..", "../escape", "../../escape", "job/../../escape", "a/b", "a\\b", "", ".hidden", 123, None],
)
def test_a_job_id_that_is_no_plain_name_is_refused_and_nothing_is_written(
    api: FakeApi, tmp_path: Path, job_id: Any
) -> None:
    api.job_id = job_id
    with pytest.raises(Exit) as refused:
        invoke_run(tmp_path)
    assert refused.value.code == 1
    assert "job id" in str(refused.value.message) and "folder name" in str(refused.value.message)
    assert files_under(tmp_path) == ["wf.json"], "nothing was saved anywhere"
    assert api.paths == ["/v2/ep/run"], "the job was not followed"


def test_an_absolute_job_id_is_refused(api: FakeApi, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    api.job_id = str(target)
    with pytest.raises(Exit):
        invoke_run(tmp_path)
    assert not target.exists()
    assert files_under(tmp_path) == ["wf.json"]
