"""``invoke workers``, ``logs``, ``releases`` and ``cost`` against the spec-checked REST v2 emulator.

The tasks run as a user runs them: their functions with an invoke ``Context`` (output captured), or
``python -m invoke logs --follow`` in a subprocess that is interrupted with Ctrl+C (SIGINT). Every request
and answer is validated against openapi-v2.json by the emulator (a violation fails the test).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from invoke.context import Context
from invoke.exceptions import Exit
from rich.console import Console

from infra.runpod_rest import RunPodREST
from tasks import job_history, observe, observe_view
from tests.cutting_proxy import CuttingProxy
from tests.helpers import REPO, endpoint_fields, run_in_repo
from tests.runpod_rest_emulator import Fault, RunPodRESTEmulator, running_emulator

IMAGE = "ghcr.io/me/comfy-runpod@sha256:" + "a" * 64
NEW_IMAGE = "ghcr.io/me/comfy-runpod@sha256:" + "b" * 64


@pytest.fixture
def emulator() -> Iterator[RunPodRESTEmulator]:
    yield from running_emulator()


@pytest.fixture
def env(emulator: RunPodRESTEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The user's environment: the emulator as RunPod, a job API nobody answers (port 9 is discard)."""
    values = {
        "RUNPOD_REST_URL": emulator.url,
        "RUNPOD_API_KEY": emulator.api_key,
        "COMFY_RUNPOD_STATE": str(tmp_path / "state"),
        "RUNPOD_REST_BACKOFF_S": "0",
    }
    for name in ("RUNPOD_ENDPOINT_ID", "RUNPOD_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def endpoint(emulator: RunPodRESTEmulator) -> str:
    with RunPodREST(emulator.api_key, url=emulator.url) as api:
        env = {"HF_TOKEN": "hf_secret_value", "LOG": "info"}
        created = api.save_endpoint(endpoint_fields(imageName=IMAGE, env=env, gpuIds="ADA_24"))
    return str(created["id"])


def run_task(func: Any, capsys: pytest.CaptureFixture[str], **kwargs: Any) -> str:
    func(Context(), **kwargs)
    return capsys.readouterr().out


def refused(func: Any, **kwargs: Any) -> str:
    with pytest.raises(Exit) as exc:
        func(Context(), **kwargs)
    message = str(exc.value.message)
    assert "\n" not in message.strip(), message
    return message


# ── workers ──────────────────────────────────────────────────────────────────────────────────────────


def test_workers_lists_each_worker_and_marks_the_stale_ones(
    emulator: RunPodRESTEmulator, env: dict[str, str], endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    old = emulator.account.add_worker(endpoint, status="RUNNING", uptime_s=3725)
    with RunPodREST(emulator.api_key, url=emulator.url) as api:
        api.save_endpoint({"id": endpoint, "imageName": NEW_IMAGE})
    new = emulator.account.add_worker(
        endpoint, status="IDLE", gpu_type_id="NVIDIA L4", data_center_id="US-KS-2"
    )

    out = run_task(observe.workers, capsys, endpoint=endpoint)

    assert f"endpoint {endpoint}  version 2  workers: 2 (1 running, 1 idle" in out
    old_row = next(line for line in out.splitlines() if line.startswith(old))
    new_row = next(line for line in out.splitlines() if line.startswith(new))
    assert "RUNNING" in old_row and "NVIDIA GeForce RTX 4090" in old_row and "EU-RO-1" in old_row
    assert "sha256:aaaaaaaaaaaa" in old_row and "1h02m" in old_row and "stale" in old_row
    assert "IDLE" in new_row and "NVIDIA L4" in new_row and "US-KS-2" in new_row
    assert "sha256:bbbbbbbbbbbb" in new_row and "current" in new_row
    assert "jobs: unavailable" in out  # the job API (api.runpod.ai) is not reachable from the tests
    assert emulator.api_key not in out


def test_watch_view_renders_and_refreshes_in_place(
    emulator: RunPodRESTEmulator, env: dict[str, str], endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.account.add_worker(endpoint, status="INITIALIZING", uptime_s=None, gpu_type_id=None)
    health = {"jobs": {"inQueue": 2, "inProgress": 1, "completed": 7, "failed": 1, "retried": 0}}
    with RunPodREST(emulator.api_key, url=emulator.url) as api:
        view = observe_view.workers_view(
            endpoint, api.list_endpoint_workers(endpoint), observe_view.job_counts(health)
        )
    console = Console(record=True, width=160)
    console.print(view)
    text = console.export_text()
    assert "INITIALIZING" in text and "1x " not in text  # no GPU type yet: "-"
    assert "jobs: 2 in queue, 1 in progress, 7 completed, 1 failed, 0 retried" in text

    started = time.monotonic()
    out = run_task(observe.workers, capsys, endpoint=endpoint, watch=True, interval=0.2, times=3)
    assert time.monotonic() - started >= 0.4  # refreshed, then stopped after 3 views
    assert "INITIALIZING" in out
    assert emulator.operations().count("listEndpointWorkers") >= 4


# ── releases ──────────────────────────────────────────────────────────────────────────────────────────


def test_releases_show_version_source_workers_and_what_changed_without_env_values(
    emulator: RunPodRESTEmulator, env: dict[str, str], endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.account.add_worker(endpoint)
    with RunPodREST(emulator.api_key, url=emulator.url) as api:
        api.save_endpoint({"id": endpoint, "imageName": NEW_IMAGE, "env": {"HF_TOKEN": "hf_other_secret"}})
    emulator.account.add_worker(endpoint)

    lines = run_task(observe.releases, capsys, endpoint=endpoint).splitlines()

    assert lines[0] == "endpoint version 2: rolling out, 1/2 workers on it (50%)"
    assert lines[1].startswith("v2  MANUAL  ") and "1 workers" in lines[1]
    assert "image: ghcr.io/me/comfy-runpod@sha256:aaaa" in lines[1]
    assert "env: HF_TOKEN, LOG (values hidden)" in lines[1]
    assert lines[2].startswith("v1  MANUAL  ") and lines[2].endswith("initial release")
    assert "hf_secret_value" not in "\n".join(lines) and "hf_other_secret" not in "\n".join(lines)


# ── logs ──────────────────────────────────────────────────────────────────────────────────────────


def test_logs_of_every_worker_are_interleaved_by_time_and_labelled(
    emulator: RunPodRESTEmulator, env: dict[str, str], endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    a = emulator.account.add_worker(endpoint)
    b = emulator.account.add_worker(endpoint)
    emulator.account.log(a, "a one")
    emulator.account.log(b, "b one")
    emulator.account.log(a, "pulling image", source="system")
    emulator.account.log(b, "b two")

    lines = run_task(observe.logs, capsys, endpoint=endpoint).splitlines()

    assert [line.split(" ", 1)[1] for line in lines] == [
        f"{a} | a one",
        f"{b} | b one",
        f"{a}/system | pulling image",
        f"{b} | b two",
    ]
    assert all(line[:4] == "2026" for line in lines)
    tail = run_task(observe.logs, capsys, endpoint=endpoint, worker=b, tail=1).splitlines()
    assert [line.split(" ", 1)[1] for line in tail] == [f"{b} | b two"]


def _raw_stream(emulator: RunPodRESTEmulator, path: str) -> bytes:
    host, port = emulator.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as conn:
        conn.sendall(
            f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {emulator.api_key}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _follow(env: dict[str, str], *args: str) -> tuple[subprocess.Popen[str], queue.Queue[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "invoke", "logs", "--follow", *args],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True, name="pump-stdout").start()
    return proc, lines


def _interrupt(proc: subprocess.Popen[str]) -> tuple[int, str]:
    """Ctrl+C, as a user stops ``--follow``: the exit code and stderr."""
    proc.send_signal(signal.SIGINT)
    rc = proc.wait(timeout=20)
    assert proc.stderr is not None and proc.stdout is not None
    stderr = proc.stderr.read()
    proc.stderr.close()
    for thread in threading.enumerate():
        if thread.name == "pump-stdout":
            thread.join(timeout=5)
    proc.stdout.close()
    return rc, stderr


def _take(lines: queue.Queue[str], count: int, timeout: float = 30.0) -> list[str]:
    deadline = time.monotonic() + timeout
    got: list[str] = []
    while len(got) < count:
        try:
            got.append(lines.get(timeout=max(0.01, deadline - time.monotonic())))
        except queue.Empty:
            break
    return got


def test_follow_survives_a_connection_cut_mid_event_without_losing_or_repeating_a_line(
    emulator: RunPodRESTEmulator, env: dict[str, str], endpoint: str
) -> None:
    worker = emulator.account.add_worker(endpoint)
    for i in range(6):
        emulator.account.log(worker, f"line {i}")
    path = f"/v2/serverless/{endpoint}/workers/{worker}/logs?tail=100"
    raw = _raw_stream(emulator, path)
    cut = raw.index(b'"line": "line 3"') + 5  # inside the 4th event: its id and half its data arrived
    host, port = emulator.url.removeprefix("http://").split(":")
    proxy = CuttingProxy((host, int(port)), cut_after={0: cut}).start()
    try:
        proc, lines = _follow(
            {**env, "RUNPOD_REST_URL": proxy.url}, "--endpoint", endpoint, "--worker", worker
        )
        first = _take(lines, 6)
        for i in range(6, 9):  # lines written while following: read by the next reconnect
            emulator.account.log(worker, f"line {i}")
        later = _take(lines, 3)
        time.sleep(1.5)  # another reconnect or two: nothing new, nothing repeated
        rc, stderr = _interrupt(proc)
        rest = _take(lines, 1, timeout=0.5)
    finally:
        proxy.stop()
    assert proxy.cuts == 1
    assert [line.rsplit("| ", 1)[1] for line in first + later + rest] == [f"line {i}" for i in range(9)]
    assert rc == 0, stderr
    assert "Traceback" not in stderr and emulator.api_key not in stderr


# ── errors ──────────────────────────────────────────────────────────────────────────────────────────


def test_errors_are_one_line_each_and_never_show_the_key(
    emulator: RunPodRESTEmulator, env: dict[str, str], endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.inject(Fault(403, "access denied", operation="listEndpointWorkers"))
    assert "error: the API key may not do this (listEndpointWorkers, HTTP 403): Forbidden: access denied" in (
        refused(observe.workers, endpoint=endpoint)
    )
    emulator.inject(Fault(403, "access denied", operation="listServerlessBilling"))
    assert "read access to Billing" in refused(observe.cost, endpoint=endpoint)

    assert "not found (listEndpointReleases, HTTP 404)" in refused(observe.releases, endpoint="ep-missing")
    assert "ep-missing" in refused(observe.logs, endpoint="ep-missing")

    emulator.inject(*[Fault(429, operation="listEndpointReleases", retry_after=0)] * 3)
    emulator.inject(Fault(429, operation="listEndpointReleases", retry_after=12))
    message = refused(observe.releases, endpoint=endpoint)
    assert "rate limited by RunPod (listEndpointReleases, HTTP 429)" in message
    assert message.endswith("retry after 12 s")

    monkeypatch.setenv("RUNPOD_API_KEY", "rpa_wrong_key_1234567890")
    message = refused(observe.workers, endpoint=endpoint)
    assert "RunPod refused the API key (listEndpointWorkers, HTTP 401)" in message
    assert "rpa_wrong_key" not in message
    assert not any("key" in r.path.lower() or "rpa_" in r.path for r in emulator.requests)


def test_no_endpoint_and_bad_arguments_exit_2(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")  # no pulumi: no stack output to fall back to
    with pytest.raises(Exit) as exc:
        observe.workers(Context())
    assert exc.value.code == 2 and "no endpoint" in str(exc.value.message)
    with pytest.raises(Exit) as exc:
        observe.logs(Context(), endpoint="ep", since="yesterday")
    assert exc.value.code == 2 and "--since" in str(exc.value.message)


# ── cost ──────────────────────────────────────────────────────────────────────────────────────────


def test_cost_sums_billing_per_endpoint_and_volume_and_estimates_each_job(
    emulator: RunPodRESTEmulator,
    env: dict[str, str],
    endpoint: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    now = datetime.now(UTC)
    emulator.account.charge(endpoint, now, gpu=2.5, disk=0.25, fee=0.25)
    emulator.account.charge("ep-other", now, gpu=1.0)
    with RunPodREST(emulator.api_key, url=emulator.url) as api:
        volume = api.create_network_volume(name="models", size=50, data_center_id="EU-RO-1")
    emulator.account.charge_volume(volume["id"], now, standard=0.5)
    out_dir = tmp_path / "outputs"
    job_history.record(
        out_dir, endpoint, {"id": "job-1", "status": "COMPLETED", "delayTime": 900, "executionTime": 36000}
    )
    job_history.record(
        out_dir, endpoint, {"id": "job-2", "status": "FAILED", "delayTime": 100, "executionTime": 1800}
    )
    job_history.record(out_dir, "ep-other", {"id": "job-x", "status": "COMPLETED", "executionTime": 5})

    console_out = run_task(
        observe.cost, capsys, endpoint=endpoint, days=7, history=str(out_dir / "jobs.jsonl")
    )

    assert f"comfy ({endpoint})" in console_out and "3.00" in console_out
    assert f"models ({volume['id']})" in console_out
    assert "total: 4.50 USD (serverless 4.00, network volumes 0.50)" in console_out
    assert "job-1" in console_out and "job-2" in console_out and "job-x" not in console_out
    assert "1 GPU x ADA_24 list price 1.10 USD/GPU-hour" in console_out
    # job-1: 36 s x 1 GPU = 36 GPU-s, at 1.10 USD/h = 0.0110 USD; job-2: 1.8 GPU-s
    assert "0.0110" in console_out and "2 jobs: 37.8 GPU-seconds, estimate 0.0116 USD" in console_out
    days = [r for r in emulator.requests if r.operation == "listServerlessBilling"]
    assert days and all(r.status == 200 for r in days)


def test_job_history_keeps_only_timings(tmp_path: Path) -> None:
    job_history.record(
        tmp_path,
        "ep",
        {"id": "j", "status": "COMPLETED", "delayTime": 5, "executionTime": 7, "output": {"x": 1}},
    )
    saved = json.loads((tmp_path / "jobs.jsonl").read_text())
    assert set(saved) == {"id", "endpoint", "status", "delayTime", "executionTime", "finishedAt"}
    assert job_history.load(tmp_path / "jobs.jsonl", "ep", 0)[0].execution_ms == 7


def test_follow_without_a_worker_interleaves_every_worker_in_time_order(
    emulator: RunPodRESTEmulator, env: dict[str, str], endpoint: str
) -> None:
    a = emulator.account.add_worker(endpoint)
    b = emulator.account.add_worker(endpoint)
    for worker, text in ((a, "a1"), (b, "b1"), (a, "a2"), (b, "b2")):
        emulator.account.log(worker, text)
    proc, lines = _follow(env, "--endpoint", endpoint)
    backfill = _take(lines, 4)
    emulator.account.log(b, "b3")
    live = _take(lines, 1)
    rc, stderr = _interrupt(proc)
    assert [line.split(" ", 1)[1] for line in backfill + live] == [
        f"{a} | a1",
        f"{b} | b1",
        f"{a} | a2",
        f"{b} | b2",
        f"{b} | b3",
    ]
    assert rc == 0, stderr


def test_since_takes_durations_and_times() -> None:
    now = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
    assert observe.parse_since("10m", now) == "2026-06-01T11:50:00Z"
    assert observe.parse_since("1.5h", now) == "2026-06-01T10:30:00Z"
    assert observe.parse_since("2026-06-01T14:00:00+02:00", now) == "2026-06-01T12:00:00Z"


def test_follow_of_an_unknown_worker_is_one_404_line(
    emulator: RunPodRESTEmulator, env: dict[str, str], endpoint: str
) -> None:
    done = run_in_repo(
        [sys.executable, "-m", "invoke", "logs", "--follow", "--endpoint", endpoint, "--worker", "nobody"],
        {**os.environ, **env},
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: not found (getWorkerLogs, HTTP 404): Not Found: worker nobody of endpoint "
        f"{endpoint} not found; check the endpoint id ({endpoint}) or worker id"
    ]


def test_sse_parsing_keeps_only_complete_events() -> None:
    from infra.sse import LogEvent, parse_sse

    text = (
        ": keep-alive\n\n"
        'id: t1\ndata: {"ts": "t1", "source": "system", "line": "pulling"}\n\n'
        "id: t2\ndata: not json\ndata: second line\r\n\r\n"
        'id: t3\ndata: {"ts": "t3", "line": "cut off by a drop"}'
    )
    assert list(parse_sse(text.split("\n"))) == [
        LogEvent("t1", "t1", "system", "pulling"),
        LogEvent("t2", "", "container", "not json\nsecond line"),
    ]


def test_watch_ends_cleanly_on_ctrl_c(
    emulator: RunPodRESTEmulator, env: dict[str, str], endpoint: str
) -> None:
    emulator.account.add_worker(endpoint, status="RUNNING")
    proc = subprocess.Popen(
        [sys.executable, "-m", "invoke", "workers", "--watch", "--interval", "0.3", "--endpoint", endpoint],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while emulator.operations().count("listEndpointWorkers") < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "RUNNING" in out and "Traceback" not in err
