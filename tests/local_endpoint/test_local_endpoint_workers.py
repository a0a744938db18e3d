"""The local endpoint with real workers: ``python -u handler/handler.py`` under the unmodified
RunPod SDK loop, attached to the in-process ComfyUI stand-in.

Worker processes take a few seconds to start, so one two-worker endpoint is shared by the
module; every test first waits until both workers are waiting for a job (``idle``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from comfyui_standin import StandinComfyUI
from local_endpoint import LocalEndpoint
from tests.conftest import attach_env
from tests.handler.test_supervisor import spawn_env
from tests.helpers import empty_invert_save, pixel, raise_save
from tests.local_endpoint_fixtures import Api, WebhookReceiver, running_endpoint, wait_until

KEY = "local-test-api-key"


def sleep_save(seconds: float, prefix: str = "slept") -> dict[str, Any]:
    return {
        "1": {"class_type": "StandinSleep", "inputs": {"seconds": seconds}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
    }


RAISE = raise_save()


@pytest.fixture(scope="module")
def endpoint(comfy: StandinComfyUI) -> Iterator[LocalEndpoint]:
    with running_endpoint(workers=2, worker_env=attach_env(comfy), api_key=KEY) as ep:
        yield ep


@pytest.fixture
def api(endpoint: LocalEndpoint) -> Api:
    return Api(endpoint, key=KEY)


@pytest.fixture
def idle(endpoint: LocalEndpoint) -> None:
    """Both workers are waiting in job-take (after a job the SDK pauses 1 s before asking)."""
    endpoint.blocking(endpoint.wait_ready(timeout=30))


def live_group_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that are not zombies (Linux /proc)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def interrupts(comfy: StandinComfyUI) -> int:
    return sum(1 for method, path, _ in comfy.requests if (method, path) == ("POST", "/interrupt"))


def prompts_of(comfy: StandinComfyUI, job_id: str) -> int:
    return sum(
        1
        for method, path, body in comfy.requests
        if (method, path) == ("POST", "/prompt") and job_id in json.dumps(body)
    )


def test_run_goes_through_the_queue_to_completed_with_outputs(api: Api) -> None:
    job_id = api.run({"workflow": empty_invert_save(color=0x00FF00)})
    assert api.status(job_id)["status"] in {"IN_QUEUE", "IN_PROGRESS"}
    body = api.wait(job_id)
    assert body["status"] == "COMPLETED", body
    [image] = body["output"]["outputs"]
    assert image["filename"] == "inverted_00001_.png"
    assert pixel(image["data"]) == (255, 0, 255)
    assert body["workerId"].startswith("w")
    assert body["executionTime"] > 0


def test_runsync_answers_with_the_result(api: Api) -> None:
    body = api.post("runsync", {"input": {"workflow": empty_invert_save()}}).json()
    assert body["id"].startswith("sync-")
    assert body["status"] == "COMPLETED"
    assert body["output"]["outputs"][0]["kind"] == "image"


def test_runsync_wait_expiring_then_status_completes(api: Api) -> None:
    body = api.post("runsync?wait=1000", {"input": {"workflow": sleep_save(2.0)}}).json()
    assert body["status"] in {"IN_QUEUE", "IN_PROGRESS"}
    assert set(body) == {"id", "status"}
    running = api.wait(body["id"], {"IN_PROGRESS", "COMPLETED"})
    if running["status"] == "IN_PROGRESS" and "output" in running:
        assert {"node", "step", "max"} <= running["output"].keys(), "progress_update shows in /status"
    done = api.wait(body["id"])
    assert done["status"] == "COMPLETED"
    assert done["output"]["outputs"][0]["filename"].startswith("slept")


def test_cancel_of_a_running_job_interrupts_comfyui(
    api: Api, comfy: StandinComfyUI, endpoint: LocalEndpoint
) -> None:
    before = interrupts(comfy)
    job_id = api.run({"workflow": sleep_save(30)})
    api.wait(job_id, {"IN_PROGRESS"})
    wait_until(lambda: prompts_of(comfy, job_id) == 1, what="the prompt to reach ComfyUI")
    wait_until(lambda: "output" in api.status(job_id), what="a progress update in /status")
    progress = api.status(job_id)["output"]
    assert progress["class_type"] == "StandinSleep" and progress["nodes_total"] == 2
    assert api.post(f"cancel/{job_id}").json() == {"id": job_id, "status": "CANCELLED"}
    wait_until(lambda: interrupts(comfy) > before, what="POST /interrupt from the handler")
    assert api.status(job_id)["status"] == "CANCELLED"
    endpoint.blocking(endpoint.wait_ready(timeout=10))  # the worker let the job go


def test_a_failing_workflow_fails_with_the_structured_error(api: Api) -> None:
    body = api.wait(api.run({"workflow": RAISE}))
    assert body["status"] == "FAILED"
    error = json.loads(body["error"])
    assert error["code"] == "EXECUTION_ERROR"
    assert "kaput" in error["message"]


def test_execution_timeout_times_out_and_stops_the_handler(api: Api, comfy: StandinComfyUI) -> None:
    before = interrupts(comfy)
    job_id = api.run({"workflow": sleep_save(30)}, policy={"executionTimeout": 1500})
    body = api.wait(job_id)
    assert body["status"] == "TIMED_OUT"
    wait_until(lambda: interrupts(comfy) > before, what="the handler to interrupt ComfyUI")


def test_webhook_receives_the_result(api: Api) -> None:
    with WebhookReceiver() as hook:
        job_id = api.run({"workflow": empty_invert_save()}, webhook=hook.url)
        body = hook.wait()
    assert body["id"] == job_id
    assert body["status"] == "COMPLETED"
    assert body["output"] == api.status(job_id)["output"]


def test_two_workers_four_jobs_none_lost_none_twice(api: Api, comfy: StandinComfyUI, idle: None) -> None:
    ids = [api.run({"workflow": sleep_save(1.0, prefix=f"job{n}")}) for n in range(4)]
    bodies = [api.wait(job_id) for job_id in ids]
    assert [b["status"] for b in bodies] == ["COMPLETED"] * 4
    for n, body in enumerate(bodies):
        assert body["output"]["outputs"][0]["filename"].startswith(f"job{n}")
        assert prompts_of(comfy, body["id"]) == 1, "each job ran exactly once"
    assert len({b["workerId"] for b in bodies}) == 2, "both workers took jobs"


def test_retry_of_a_failed_job_runs_it_again(api: Api, comfy: StandinComfyUI) -> None:
    job_id = api.run({"workflow": RAISE})
    assert api.wait(job_id)["status"] == "FAILED"
    assert api.post(f"retry/{job_id}").json() == {"id": job_id, "status": "IN_QUEUE"}
    again = api.wait(job_id)
    assert again["status"] == "FAILED"
    assert again["retries"] == 1
    assert prompts_of(comfy, job_id) == 2
    assert api.health()["jobs"]["retried"] >= 1


def test_requests_without_the_key_are_refused(endpoint: LocalEndpoint) -> None:
    assert requests.post(f"{endpoint.url}/run", json={"input": {}}, timeout=10).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert requests.get(f"{endpoint.url}/health", headers=wrong, timeout=10).status_code == 401


def test_runpods_own_client_runs_jobs_through_it(
    api: Api, endpoint: LocalEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    import runpod

    monkeypatch.setattr(runpod, "endpoint_url_base", endpoint.base_url)
    monkeypatch.setattr(runpod, "api_key", KEY)
    client = runpod.Endpoint(endpoint.endpoint_id)

    output = client.run_sync({"input": {"workflow": empty_invert_save()}}, timeout=60)
    assert output["outputs"][0]["filename"] == "inverted_00001_.png"

    job = client.run({"input": {"workflow": sleep_save(30)}})
    wait_until(lambda: job.status() == "IN_PROGRESS", what="the job to start")
    assert job.cancel()["status"] == "CANCELLED"
    assert job.status() == "CANCELLED"

    health = client.health()
    assert set(health["jobs"]) == {"completed", "failed", "inProgress", "inQueue", "retried"}
    assert health["workers"]["idle"] + health["workers"]["running"] == 2


def test_a_killed_worker_fails_its_job_and_a_new_one_takes_the_next(standin: StandinComfyUI) -> None:
    with running_endpoint(workers=1, worker_env=attach_env(standin)) as ep:
        api = Api(ep)
        job_id = api.run({"workflow": sleep_save(30)})
        assert api.wait(job_id, {"IN_PROGRESS"})["workerId"] == "w1-0"
        pid = ep.worker_pids()["w1-0"]
        assert len(live_group_members(pid)) >= 2, "the worker and the SDK's heartbeat process"
        assert ep.kill_worker("w1-0")
        body = api.wait(job_id)
        assert body["status"] == "FAILED"
        assert "worker w1-0 died while running this job: killed by SIGKILL (exit code 137)" in body["error"]
        standin.interrupt()  # the orphaned prompt: nobody waits for it any more
        wait_until(lambda: not live_group_members(pid), timeout=5, what="the worker's process group to die")

        ep.blocking(ep.wait_ready(timeout=30))
        after = api.wait(api.run({"workflow": sleep_save(0.2)}))
        assert after["status"] == "COMPLETED"
        assert after["workerId"] == "w1-1"

        # Stopping the endpoint while a job runs stops the job first, so the worker exits cleanly.
        before = interrupts(standin)
        running = api.run({"workflow": sleep_save(30)})
        api.wait(running, {"IN_PROGRESS"})
        wait_until(lambda: prompts_of(standin, running) == 1, what="the prompt to reach ComfyUI")
        started = time.monotonic()
        ep.stop_thread()
        assert time.monotonic() - started < 4.5, "no SIGKILL after the grace period"
        [last] = [e for e in ep.recent_exits if e.worker_id == "w1-1"]
        assert (last.returncode, last.planned) == (0, True)
        assert interrupts(standin) > before, "the handler interrupted its prompt"
        job = ep.store.get(running)
        assert job is not None and job.status == "FAILED"
        assert "the local endpoint stopped" in str(job.error)


def test_stop_pod_in_a_result_restarts_the_worker(tmp_path: Path) -> None:
    """A handler result with ``refresh_worker`` (``stopPod``) gets its worker replaced."""
    env = spawn_env(tmp_path, MAX_RESTARTS=1, STANDIN_EXIT_ON_BOOT=1)
    with running_endpoint(workers=1, worker_env=env) as ep:
        api = Api(ep)
        [first] = ep.worker_pids()
        body = api.wait(api.run({"workflow": empty_invert_save()}))
        assert body["status"] == "FAILED"
        error = json.loads(body["error"])
        assert error["code"] == "COMFY_START_FAILED", error
        assert body["workerId"] == first
        wait_until(lambda: first not in ep.worker_pids(), timeout=15, what="the old worker to go")
        ep.blocking(ep.wait_ready(timeout=30))
        [second] = ep.worker_pids()
        assert second != first
        assert ep.pool.restarts == 1
        time.sleep(0.1)
        assert json.loads(api.status(body["id"])["error"])["code"] == "COMFY_START_FAILED", (
            "a planned restart does not touch the finished job"
        )
