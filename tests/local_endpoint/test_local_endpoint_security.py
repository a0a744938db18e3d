"""The local endpoint against a hostile web page in the user's browser, and out of the box.

A page can reach 127.0.0.1: a ``fetch(..., {mode: "no-cors"})`` sends ``text/plain`` with
its own ``Origin``; after DNS rebinding its requests carry its own ``Host``. Each is refused,
and the key the endpoint makes for itself (no ``RUNPOD_API_KEY``) is required, while the
project's own clients find that key by themselves.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from custom_node.config import load_config
from custom_node.local_key import key_file
from local_endpoint import LocalEndpoint
from tests.helpers import run_in_repo
from tests.local_endpoint_fixtures import (
    FAST,
    Api,
    FakeWorker,
    WebhookReceiver,
    running_endpoint,
    start_cli,
    stop_cli,
    wait_until,
)

STRICT = dataclasses.replace(FAST, allow_private_webhooks=False)


@pytest.fixture(scope="module")
def endpoint() -> Iterator[LocalEndpoint]:
    with running_endpoint(workers=0, settings=STRICT) as ep:
        yield ep


def post(ep: LocalEndpoint, op: str = "run", **kwargs: object) -> requests.Response:
    headers = {"Authorization": f"Bearer {ep.api_key}", **kwargs.pop("headers", {})}  # type: ignore[dict-item]
    return requests.post(f"{ep.url}/{op}", headers=headers, timeout=10, **kwargs)  # type: ignore[arg-type]


# -- item: no key configured -> one is made and required ------------------------------------


def test_without_a_configured_key_one_is_made_and_required(endpoint: LocalEndpoint) -> None:
    assert endpoint.key_generated and len(endpoint.api_key) > 40
    assert requests.post(f"{endpoint.url}/run", json={"input": {}}, timeout=10).status_code == 401
    assert requests.get(f"{endpoint.url}/health", timeout=10).status_code == 401
    assert post(endpoint, json={"input": {}}).status_code == 200
    assert LocalEndpoint(workers=0).api_key != endpoint.api_key, "a new key each run"


def test_a_no_cors_page_request_is_refused(endpoint: LocalEndpoint) -> None:
    """What fetch(url, {method: "POST", mode: "no-cors", body: JSON.stringify(job)}) sends."""
    before = Api(endpoint).health()["jobs"]["inQueue"]
    page = requests.post(
        f"{endpoint.url}/run",
        data=json.dumps({"input": {"workflow": {}}}),
        headers={"Content-Type": "text/plain;charset=UTF-8", "Origin": "https://evil.example"},
        timeout=10,
    )
    assert page.status_code == 403 and "web pages" in page.json()["error"]
    assert Api(endpoint).health()["jobs"]["inQueue"] == before


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ],
)
def test_posts_take_json_only(endpoint: LocalEndpoint, content_type: str) -> None:
    body = json.dumps({"input": {}})
    for op in ("run", "runsync"):
        refused = post(endpoint, op, data=body, headers={"Content-Type": content_type})
        assert refused.status_code == 415, (op, refused.text)
        assert "application/json" in refused.json()["error"]
    no_type = post(endpoint, data=body.encode())
    assert no_type.status_code == 415


def test_bodyless_posts_and_json_still_work(endpoint: LocalEndpoint) -> None:
    job_id = post(endpoint, json={"input": {}}).json()["id"]
    cancel = post(endpoint, f"cancel/{job_id}")  # no body, no Content-Type (RunPod's SDK, ours)
    assert cancel.status_code == 200 and cancel.json()["status"] == "CANCELLED"
    assert post(endpoint, "purge-queue", json=None).status_code == 200
    charset = post(
        endpoint, data=b'{"input": {}}', headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert charset.status_code == 200


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://127.0.0.1:1", "http://localhost"])
def test_a_foreign_origin_is_refused_even_with_the_key(endpoint: LocalEndpoint, origin: str) -> None:
    response = post(endpoint, json={"input": {}}, headers={"Origin": origin})
    assert response.status_code == 403
    got = requests.get(
        f"{endpoint.url}/health",
        headers={"Authorization": f"Bearer {endpoint.api_key}", "Origin": origin},
        timeout=10,
    )
    assert got.status_code == 403


def test_its_own_origin_is_accepted(endpoint: LocalEndpoint) -> None:
    own = f"http://127.0.0.1:{endpoint.port}"
    assert post(endpoint, json={"input": {}}, headers={"Origin": own}).status_code == 200


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:{port}", "192.168.1.20:{port}", "127.0.0.1.nip.io"]
)
def test_a_rebound_dns_name_is_refused(endpoint: LocalEndpoint, host: str) -> None:
    """After DNS rebinding the page's requests reach 127.0.0.1 but name the page's own host."""
    headers = {"Host": host.format(port=endpoint.port)}
    response = post(endpoint, json={"input": {}}, headers=headers)
    assert response.status_code == 403 and "not this machine" in response.json()["error"]
    worker = FakeWorker(endpoint)
    worker.session.headers.update(headers)
    assert worker.take_response().status_code == 403, "the worker routes too"


@pytest.mark.parametrize(
    "host", ["localhost:{port}", "127.0.0.1:{port}", "LOCALHOST", "[::1]:{port}", "127.0.0.2"]
)
def test_loopback_host_names_are_accepted(endpoint: LocalEndpoint, host: str) -> None:
    response = post(endpoint, json={"input": {}}, headers={"Host": host.format(port=endpoint.port)})
    assert response.status_code == 200, response.text


def test_allow_host_adds_a_name() -> None:
    with running_endpoint(workers=0, allowed_hosts=["studio.lan"]) as ep:
        assert post(ep, json={"input": {}}, headers={"Host": f"studio.lan:{ep.port}"}).status_code == 200
        assert post(ep, json={"input": {}}, headers={"Host": "other.lan"}).status_code == 403


# -- webhooks: the worker's address policy for input URLs -----------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://[::1]:9/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.5/hook",
        "http://192.168.1.1/hook",
        "http://0.0.0.0:9/",
    ],
)
def test_a_webhook_to_a_private_address_is_refused(endpoint: LocalEndpoint, url: str) -> None:
    response = post(endpoint, json={"input": {}, "webhook": url})
    assert response.status_code == 400
    assert "'webhook'" in response.json()["error"] and "public" in response.json()["error"]


def test_a_webhook_name_resolving_to_loopback_gets_nothing() -> None:
    with running_endpoint(workers=0, settings=STRICT) as ep, WebhookReceiver() as hook:
        url = hook.url.replace("127.0.0.1", "localhost")
        response = post(ep, json={"input": {}, "webhook": url})
        assert response.status_code == 200, response.text
        job_id = response.json()["id"]
        worker = FakeWorker(ep)
        assert worker.take_until()["id"] == job_id
        worker.done(job_id, {"output": {"secret": "outputs"}})
        wait_until(lambda: ep.call(lambda: ep.webhooks.pending) == 0, what="the webhook attempts")
        assert Api(ep).status(job_id)["status"] == "COMPLETED"
        assert hook.attempts == 0, "the outputs never reached a loopback receiver"


def test_allow_private_webhooks_lets_a_local_receiver_in() -> None:
    with running_endpoint(workers=0) as ep, WebhookReceiver() as hook:  # FAST allows them
        url = hook.url.replace("127.0.0.1", "localhost")  # the same name as refused above
        job_id = post(ep, json={"input": {}, "webhook": url}).json()["id"]
        worker = FakeWorker(ep)
        worker.take_until()
        worker.done(job_id, {"output": 1})
        assert hook.wait()["id"] == job_id


# -- out of the box: the CLI, its key file, and the clients that read it ---------------------


def test_the_cli_prints_its_key_once_and_local_clients_find_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc, banner = start_cli(state)
    try:
        url = re.search(r"RUNPOD_ENDPOINT_URL=(\S+)", banner)
        key = re.search(r"RUNPOD_API_KEY=(\S+)", banner)
        assert url and key, banner
        url_s, key_s = url.group(1), key.group(1)
        port = int(url_s.split(":")[2].split("/")[0])
        path = key_file(port, {"COMFY_RUNPOD_STATE": str(state)})
        assert path.read_text().strip() == key_s
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert requests.get(f"{url_s}/health", timeout=10).status_code == 401

        # invoke, with no RUNPOD_API_KEY: it reads the key file
        env = {k: v for k, v in os.environ.items() if k != "RUNPOD_API_KEY"}
        env |= {"RUNPOD_ENDPOINT_URL": url_s, "COMFY_RUNPOD_STATE": str(state)}
        health = run_in_repo([sys.executable, "-m", "invoke", "health"], env, timeout=60)
        assert health.returncode == 0, health.stderr
        assert "inQueue" in health.stdout and key_s not in health.stdout + health.stderr

        # the custom node, configured with the URL only (comfy-runpod.json or the environment)
        config = load_config({"RUNPOD_ENDPOINT_URL": url_s, "COMFY_RUNPOD_STATE": str(state)})
        assert config.api_key == key_s and config.public()["has_api_key"] is True
        elsewhere = load_config({"RUNPOD_ENDPOINT_ID": "abc", "COMFY_RUNPOD_STATE": str(state)})
        assert elsewhere.api_key is None, "the local key never goes to RunPod"
    finally:
        rest = stop_cli(proc)
    assert (banner + rest).count(key_s) == 1, "printed once, never logged"
    assert not path.exists(), "the key file goes when the endpoint stops"


def test_a_configured_key_is_never_printed_or_written(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc, banner = start_cli(state, env={"RUNPOD_API_KEY": "rpa_MY_REAL_KEY"})
    try:
        assert "rpa_MY_REAL_KEY" not in banner and "RUNPOD_API_KEY" in banner
        url = re.search(r"RUNPOD_ENDPOINT_URL=(\S+)", banner)
        assert url, banner
        ok = requests.get(
            f"{url.group(1)}/health", headers={"Authorization": "Bearer rpa_MY_REAL_KEY"}, timeout=10
        )
        assert ok.status_code == 200
        # Only the release history (one release per start, ``local_endpoint.releases``) is kept there.
        written = [p for p in state.rglob("*") if p.is_file()] if state.exists() else []
        assert {p.name for p in written} <= {"local-endpoint-local-releases.json"}
        assert not any("rpa_MY_REAL_KEY" in p.read_text() for p in written)
    finally:
        rest = stop_cli(proc)
    assert "rpa_MY_REAL_KEY" not in rest


def test_invoke_demo_works_out_of_the_box(tmp_path: Path) -> None:
    """README's first command, with no RUNPOD_API_KEY anywhere."""
    from tests.local_endpoint_fixtures import scrubbed_env

    done = run_in_repo(
        [sys.executable, "-m", "invoke", "demo", "--standin", "--out", str(tmp_path / "out")],
        {**scrubbed_env(), "COMFY_RUNPOD_STATE": str(tmp_path / "state")},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert list((tmp_path / "out").rglob("*.png")), done.stdout
