"""Helpers for the local endpoint tests: a client, a fake worker, a webhook receiver.

``FakeWorker`` speaks the worker protocol exactly as RunPod's SDK does (query strings,
raw ``Authorization``, a JSON string posted as ``application/x-www-form-urlencoded``), so the
job API can be tested deterministically without worker processes; the tests with real
``handler/handler.py`` processes live in ``test_local_endpoint_workers.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

from local_endpoint import EndpointSettings, LocalEndpoint
from tests.conftest import WORKER_ENV_NAMES, WORKER_ENV_PREFIXES
from tests.helpers import REPO

FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"}

#: Fast timings for tests: short long-polls and webhook retries, short policies allowed;
#: webhooks to this machine allowed (the receivers here listen on 127.0.0.1).
FAST = EndpointSettings(
    allow_private_webhooks=True,
    take_hold_s=0.2,
    stop_hold_s=0.3,
    stop_resend_s=0.3,
    webhook_retry_delay_s=0.05,
    webhook_timeout_s=2.0,
    worker_grace_s=3.0,
    execution_timeout_range_ms=(100, 7 * 86_400_000),
    ttl_range_ms=(100, 7 * 86_400_000),
)


def scrubbed_env() -> dict[str, str]:
    """This process's environment without anything the worker reads (a developer's shell)."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(WORKER_ENV_PREFIXES) and k not in WORKER_ENV_NAMES
    }


@contextmanager
def running_endpoint(**kwargs: Any) -> Iterator[LocalEndpoint]:
    """A :class:`LocalEndpoint` in a thread (FAST settings unless given; its key is ``api_key``)."""
    kwargs.setdefault("settings", FAST)
    kwargs.setdefault("base_env", scrubbed_env())
    endpoint = LocalEndpoint(**kwargs)
    endpoint.start_in_thread(timeout=60)
    try:
        yield endpoint
    finally:
        endpoint.stop_thread()


class Api:
    """The public job API of one endpoint, as a client sees it (with the endpoint's key unless
    ``key`` is given; ``""`` sends none)."""

    def __init__(self, endpoint: LocalEndpoint, key: str | None = None) -> None:
        self.url = endpoint.url
        self.session = requests.Session()
        key = endpoint.api_key if key is None else key
        if key:
            self.session.headers["Authorization"] = f"Bearer {key}"

    def post(self, op: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return self.session.post(f"{self.url}/{op}", json=body, timeout=kwargs.pop("timeout", 30), **kwargs)

    def get(self, op: str, **kwargs: Any) -> requests.Response:
        return self.session.get(f"{self.url}/{op}", timeout=kwargs.pop("timeout", 30), **kwargs)

    def run(self, job_input: Any, **extra: Any) -> str:
        response = self.post("run", {"input": job_input, **extra})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "IN_QUEUE"
        return str(body["id"])

    def status(self, job_id: str) -> dict[str, Any]:
        response = self.get(f"status/{job_id}")
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def wait(self, job_id: str, statuses: set[str] = FINAL, timeout: float = 30) -> dict[str, Any]:
        """Poll /status until the job reaches one of ``statuses``."""
        deadline = time.monotonic() + timeout
        while True:
            body = self.status(job_id)
            if body["status"] in statuses:
                return body
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {body['status']} after {timeout} s: {body}")
            time.sleep(0.02)

    def health(self) -> dict[str, Any]:
        response = self.get("health")
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result


class FakeWorker:
    """A worker that speaks RunPod's worker protocol by hand, one request at a time."""

    def __init__(self, endpoint: LocalEndpoint, worker_id: str = "fake-1", key: str | None = None) -> None:
        self.root = endpoint.url
        self.worker_id = worker_id
        self.session = requests.Session()
        self.session.headers["Authorization"] = endpoint.worker_key if key is None else key

    def take_response(self, job_in_progress: int = 0) -> requests.Response:
        url = f"{self.root}/job-take/{self.worker_id}?gpu=local&job_in_progress={job_in_progress}"
        return self.session.get(url, timeout=10)

    def take(self, job_in_progress: int = 0) -> dict[str, Any] | None:
        response = self.take_response(job_in_progress)
        if response.status_code == 204:
            return None
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        return job

    def take_until(self, timeout: float = 5) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.take()
            if job is not None:
                return job
        raise AssertionError("no job handed out")

    def post(
        self, route: str, job_id: str, payload: dict[str, Any], *, stream: bool = False
    ) -> requests.Response:
        is_stream = "true" if stream else "false"
        url = f"{self.root}/{route}/{self.worker_id}/{job_id}?gpu=local&isStream={is_stream}"
        return self.session.post(
            url,
            data=json.dumps(payload, ensure_ascii=False),
            headers={"charset": "utf-8", "Content-Type": "application/x-www-form-urlencoded"},
            timeout=10,
        )

    def done(self, job_id: str, payload: dict[str, Any]) -> None:
        response = self.post("job-done", job_id, payload)
        assert response.status_code == 200, response.text

    def progress(self, job_id: str, output: Any) -> None:
        self.done(job_id, {"status": "IN_PROGRESS", "output": output})

    def stops(self) -> list[str]:
        response = self.session.get(f"{self.root}/job-stop/{self.worker_id}?gpu=local", timeout=30)
        if response.status_code == 204:
            return []
        assert response.status_code == 200, response.text
        return list(response.json()["jobsToStop"])


class WebhookReceiver:
    """An HTTP server that records POSTed JSON bodies; answers ``fail_first`` 500s first."""

    def __init__(self, fail_first: int = 0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.attempts = 0
        self.fail_first = fail_first
        self.received = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                receiver.attempts += 1
                if receiver.attempts <= receiver.fail_first:
                    self.send_response(500)
                    self.end_headers()
                    return
                receiver.bodies.append(body)
                self.send_response(200)
                self.end_headers()
                receiver.received.set()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait(self, timeout: float = 10) -> dict[str, Any]:
        assert self.received.wait(timeout), f"no webhook after {timeout} s ({self.attempts} attempts)"
        return self.bodies[-1]


def wait_until(predicate: Any, timeout: float = 10, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def start_cli(
    state: Path, *extra: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    """``python -m local_endpoint`` as a user starts it (no workers, a free port, ``state`` as its state
    folder), and its banner up to the "Ctrl-C" line (its URL and key)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "local_endpoint", "--port", "0", "--workers", "0", *extra],
        cwd=REPO,
        env={**scrubbed_env(), "PYTHONUNBUFFERED": "1", "COMFY_RUNPOD_STATE": str(state), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line)
        if "Ctrl-C" in line:
            break
    return proc, "".join(lines)


def stop_cli(proc: subprocess.Popen[str]) -> str:
    """Ctrl-C; the rest of its output."""
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=20)
    return rest
