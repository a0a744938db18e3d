"""The local endpoint speaks REST v2 for its own workers, and the observability tasks work against it.

Real worker processes (``handler/handler.py`` under the RunPod SDK) attached to the ComfyUI stand-in.
Every answer of the REST paths is validated against openapi-v2.json with the REST emulator's openapi-core
setup (imported, not copied). The tasks run with ``RUNPOD_ENDPOINT_URL=<local endpoint>/v2/local``, as a
user runs them with no RunPod account.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from invoke.context import Context
from invoke.exceptions import Exit
from openapi_core.testing import MockRequest, MockResponse

from comfyui_standin import StandinComfyUI
from infra.runpod_rest import RunPodREST
from local_endpoint import LocalEndpoint
from tasks import observe
from tests.conftest import attach_env
from tests.cutting_proxy import CuttingProxy
from tests.helpers import empty_invert_save
from tests.local_endpoint_fixtures import Api, running_endpoint, wait_until
from tests.runpod_rest_emulator.server import SPEC_HOST, load_openapi
from tests.tasks.test_observe_rest import _follow, _interrupt, _take

KEY = "local-observe-key-0123456789"


@pytest.fixture(scope="module")
def endpoint(comfy: StandinComfyUI) -> Iterator[LocalEndpoint]:
    with running_endpoint(workers=2, worker_env=attach_env(comfy), api_key=KEY) as ep:
        yield ep


@pytest.fixture
def env(endpoint: LocalEndpoint, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {"RUNPOD_ENDPOINT_URL": endpoint.url, "RUNPOD_API_KEY": KEY}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def origin(endpoint: LocalEndpoint) -> str:
    return endpoint.url.rsplit("/v2/", 1)[0]


def validated(
    response: httpx.Response, body: bytes | None = None, *, unauthenticated: bool = False
) -> httpx.Response:
    """Check the exchange against the spec (request: path, parameters, auth; answer: status, body);
    ``unauthenticated``: the request lacks the key on purpose, only the answer is checked."""
    request = response.request
    url = request.url
    mock_request = MockRequest(
        SPEC_HOST,
        request.method.lower(),
        url.path,
        args=dict(url.params),
        headers={k: v for k, v in request.headers.items() if k.lower() in ("authorization", "last-event-id")},
    )
    content_type = response.headers.get("content-type", "").split(";")[0]
    mock_response = MockResponse(
        body if body is not None else response.content,
        status_code=response.status_code,
        headers=dict(response.headers),
        content_type=content_type,
    )
    openapi = load_openapi()
    if not unauthenticated:
        openapi.validate_request(mock_request)
    openapi.validate_response(mock_request, mock_response)
    return response


def sse_head(client: httpx.Client, path: str, events: int, **kwargs: Any) -> tuple[httpx.Response, bytes]:
    """Open a live log stream and read until ``events`` complete events came (it never ends by itself)."""
    with client.stream("GET", path, **kwargs) as response:
        raw = b""
        if response.status_code != 200:
            return response, response.read()
        for chunk in response.iter_bytes():
            raw += chunk
            if raw.count(b"\n\n") >= events:
                break
    return response, raw


def test_rest_paths_answer_in_the_spec_shapes(endpoint: LocalEndpoint) -> None:
    endpoint.call(lambda: endpoint.logs.add("w-spec", "hello from the spec test"))
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=origin(endpoint), headers=headers, timeout=10) as client:
        workers = validated(client.get("/v2/serverless/local/workers")).json()
        assert workers["summary"]["total"] == 2 and workers["endpointVersion"] == 1
        assert {w["status"] for w in workers["workers"]} <= {"IDLE", "RUNNING", "INITIALIZING"}
        assert all(w["image"].startswith("local/handler@sha256:") for w in workers["workers"])
        releases = validated(client.get("/v2/serverless/local/releases")).json()
        assert [r["version"] for r in releases["releases"]] == [1]
        response, raw = sse_head(client, "/v2/serverless/local/workers/w-spec/logs", 1)
        validated(response, raw)
        assert b'"line": "hello from the spec test"' in raw
        assert response.headers["content-type"].startswith("text/event-stream")
        for path in ("/v2/billing/serverless", "/v2/billing/network-volumes"):
            bill = validated(client.get(path, params={"bucketSize": "day", "lastN": "7"})).json()
            assert bill["records"] == [] and bill["metadata"]["totals"]["totalAmount"] == 0
        missing = validated(client.get("/v2/serverless/local/workers/nobody/logs"))
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem+json")
        assert validated(client.get("/v2/serverless/other/workers")).status_code == 404
    unauthorized = httpx.get(f"{origin(endpoint)}/v2/serverless/local/workers", timeout=10)
    validated(unauthorized, unauthenticated=True)
    assert unauthorized.status_code == 401


def test_logs_of_a_job_are_its_worker_lines_around_it_with_the_job_id(
    endpoint: LocalEndpoint, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    api = Api(endpoint, key=KEY)
    first = api.wait(api.run({"workflow": empty_invert_save(prefix="observe-a")}))
    second = api.wait(api.run({"workflow": empty_invert_save(prefix="observe-b")}))
    assert first["status"] == second["status"] == "COMPLETED"

    observe.logs(Context(), job=first["id"])
    lines = capsys.readouterr().out.splitlines()

    assert lines, "no lines for the job"
    assert all(f" {first['workerId']} | " in line for line in lines)
    assert first["id"] in lines[0] and first["id"] in lines[-1]
    assert any(f"job {first['id']} COMPLETED" in line for line in lines)
    assert any(f"[job {first['id']}]" in line for line in lines)  # the handler's own lines carry it
    assert not any(second["id"] in line for line in lines)


def test_workers_and_releases_tasks_on_the_local_endpoint(
    endpoint: LocalEndpoint, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    wait_until(lambda: all(w.ready_at for w in endpoint.worker_states()), 30, "workers ready")
    observe.workers(Context())
    out = capsys.readouterr().out
    assert "endpoint local  version 1  workers: 2" in out
    for worker in endpoint.worker_states():
        assert worker.id in out
    assert "local/handler@sha256:" in out and "local" in out
    assert "jobs: " in out and "unavailable" not in out
    observe.releases(Context())
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "endpoint version 1: settled, 2/2 workers on it (100%)"
    assert lines[1].startswith("v1  MANUAL") and lines[1].endswith("initial release")

    monkey_key = "not-the-key-0123456789"
    os.environ["RUNPOD_API_KEY"] = monkey_key  # restored by the env fixture's monkeypatch
    with pytest.raises(Exit) as exc:
        observe.workers(Context())
    assert "HTTP 401" in str(exc.value.message) and monkey_key not in str(exc.value.message)


def test_a_restart_is_a_new_release_saying_what_changed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    history = tmp_path / "releases.json"
    with running_endpoint(workers=0, release_log=history, publish_key=True) as ep:
        monkeypatch.setenv("RUNPOD_ENDPOINT_URL", ep.url)  # no RUNPOD_API_KEY: the key file is read
        observe.releases(Context())
    other = ["python3", "-u", "other.py"]
    with (
        running_endpoint(workers=0, release_log=history, worker_command=other) as ep,
        RunPodREST(ep.api_key, url=origin(ep)) as api,
    ):
        data = api.list_endpoint_releases("local")
    first = capsys.readouterr().out
    assert "v1  MANUAL" in first
    assert [r["version"] for r in data["releases"]] == [2, 1]
    assert [d["field"] for d in data["releases"][0]["diff"]] == ["workerCommand"]
    assert json.loads(history.read_text())["releases"][0]["version"] == 2


def _raw_until(host: str, port: int, path: str, marker: bytes) -> bytes:
    with socket.create_connection((host, port)) as conn:
        conn.settimeout(5)
        conn.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n\r\n".encode()
        )
        raw = b""
        while marker not in raw:
            raw += conn.recv(65536)
    return raw


def test_follow_on_the_local_endpoint_resumes_after_a_cut_without_loss_or_repeat(
    endpoint: LocalEndpoint,
) -> None:
    worker = "w-follow"
    for i in range(6):
        endpoint.call(lambda i=i: endpoint.logs.add(worker, f"line {i}"))
    host, port = origin(endpoint).removeprefix("http://").split(":")
    path = f"/v2/serverless/local/workers/{worker}/logs?tail=100"
    raw = _raw_until(host, int(port), path, b'"line 5"}')
    cut = raw.index(b'"line": "line 3"') + 5
    proxy = CuttingProxy((host, int(port)), cut_after={0: cut}).start()
    try:
        env = {"RUNPOD_ENDPOINT_URL": f"{proxy.url}/v2/local", "RUNPOD_API_KEY": KEY}
        proc, lines = _follow(env, "--worker", worker)
        first = _take(lines, 6)
        time.sleep(0.3)
        for i in range(6, 9):  # live lines: the open stream delivers them
            endpoint.call(lambda i=i: endpoint.logs.add(worker, f"line {i}"))
        later = _take(lines, 3)
        rc, stderr = _interrupt(proc)
        rest = _take(lines, 1, timeout=0.5)
    finally:
        proxy.stop()
    assert proxy.cuts == 1
    assert [line.rsplit("| ", 1)[1] for line in first + later + rest] == [f"line {i}" for i in range(9)]
    assert proxy.connections == 2  # one cut, one resumed live stream: no polling
    assert rc == 0 and "Traceback" not in stderr and KEY not in stderr


def test_since_selects_by_time_on_the_local_endpoint(
    endpoint: LocalEndpoint, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint.call(lambda: endpoint.logs.add("w-since", "a line"))
    observe.logs(Context(), worker="w-since", since="2000-01-01T00:00:00Z")
    assert capsys.readouterr().out.endswith("w-since | a line\n")
    observe.logs(Context(), worker="w-since", since="2999-01-01T00:00:00Z")
    assert capsys.readouterr().out == ""
