"""The local endpoint's job API and worker protocol, driven by a hand-written fake worker.

Each test gets its own endpoint without worker processes (it starts in milliseconds); the
``FakeWorker`` plays the SDK, request by request, so every transition is deterministic.
"""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests

from local_endpoint import EndpointSettings, LocalEndpoint
from tests.local_endpoint_fixtures import (
    FAST,
    Api,
    FakeWorker,
    WebhookReceiver,
    running_endpoint,
    scrubbed_env,
    start_cli,
    wait_until,
)

RUN_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}-u1$")


@pytest.fixture
def endpoint() -> Iterator[LocalEndpoint]:
    with running_endpoint(workers=0) as ep:
        yield ep


@pytest.fixture
def api(endpoint: LocalEndpoint) -> Api:
    return Api(endpoint)


@pytest.fixture
def worker(endpoint: LocalEndpoint) -> FakeWorker:
    return FakeWorker(endpoint)


def test_a_job_goes_from_queue_to_worker_to_completed(api: Api, worker: FakeWorker) -> None:
    s3 = {"accessId": "a", "accessSecret": "s", "bucketName": "b", "endpointUrl": "http://s3.local"}
    job_id = api.run({"workflow": {"1": {}}}, s3Config=s3, webhook=None)
    assert RUN_ID.match(job_id)
    assert api.status(job_id) == {"id": job_id, "status": "IN_QUEUE"}

    taken = worker.take_until()
    assert taken == {"id": job_id, "input": {"workflow": {"1": {}}}, "s3Config": s3}
    running = api.status(job_id)
    assert running["status"] == "IN_PROGRESS"
    assert running["workerId"] == "fake-1"
    assert isinstance(running["delayTime"], int)
    assert "output" not in running

    worker.progress(job_id, {"step": 3, "max": 10})
    assert api.status(job_id)["output"] == {"step": 3, "max": 10}, "progress_update shows while it runs"

    worker.done(job_id, {"output": {"outputs": [{"kind": "text", "text": "hi"}]}})
    done = api.status(job_id)
    assert done["status"] == "COMPLETED"
    assert done["output"] == {"outputs": [{"kind": "text", "text": "hi"}]}
    assert isinstance(done["executionTime"], int) and done["executionTime"] >= 0
    assert "error" not in done
    worker.progress(job_id, {"step": 9})  # a late progress thread must not undo the result
    assert api.status(job_id)["output"] == done["output"]


def test_status_and_stream_answer_get_and_post(api: Api, worker: FakeWorker) -> None:
    job_id = api.run({"x": 1})
    assert api.post(f"status/{job_id}").json()["status"] == "IN_QUEUE"
    worker.take_until()
    for chunk in ("a", "b"):
        assert worker.post("job-stream", job_id, {"output": chunk}).status_code == 200
    stream = api.get(f"stream/{job_id}").json()
    assert stream["status"] == "IN_PROGRESS"
    assert stream["stream"] == [{"output": "a"}, {"output": "b"}]
    assert api.post(f"stream/{job_id}").json()["stream"] == [], "each call returns only new chunks"
    worker.post("job-stream", job_id, {"output": "c"})
    worker.done(job_id, {"output": ["a", "b", "c"]})
    final = api.get(f"stream/{job_id}").json()
    assert final["status"] == "COMPLETED"
    assert final["stream"] == [{"output": "c"}]


def test_a_failed_result_carries_the_error_string(api: Api, worker: FakeWorker) -> None:
    job_id = api.run({})
    worker.take_until()
    error = json.dumps({"code": "EXECUTION_ERROR", "message": "boom"})
    worker.done(job_id, {"error": error, "output": {"partial": True}})
    body = api.status(job_id)
    assert body["status"] == "FAILED"
    assert json.loads(body["error"])["code"] == "EXECUTION_ERROR"
    assert body["output"] == {"partial": True}
    assert api.health()["jobs"]["failed"] == 1


def test_auth_wants_the_key_as_bearer_or_raw() -> None:
    with running_endpoint(workers=0, api_key="sekret-key") as ep:
        url = f"{ep.url}/health"
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "wrong"}):
            response = requests.get(url, headers=headers, timeout=10)
            assert response.status_code == 401
            assert "error" in response.json()
        assert requests.post(f"{ep.url}/run", json={"input": {}}, timeout=10).status_code == 401
        assert (
            requests.get(url, headers={"Authorization": "Bearer sekret-key"}, timeout=10).status_code == 200
        )
        assert requests.get(url, headers={"Authorization": "sekret-key"}, timeout=10).status_code == 200
        # the public key is not the worker key, and the other way round
        assert FakeWorker(ep, key="sekret-key").take_response().status_code == 401
        assert requests.get(url, headers={"Authorization": ep.worker_key}, timeout=10).status_code == 401


def test_the_api_key_comes_from_the_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNPOD_API_KEY", "from-env")
    assert LocalEndpoint(workers=0).api_key == "from-env"
    with pytest.raises(ValueError, match="always requires a key"):
        LocalEndpoint(workers=0, api_key="")
    env = LocalEndpoint(workers=0, base_env={"RUNPOD_API_KEY": "x", "RUNPOD_POD_ID": "y", "PATH": "/bin"})
    worker_env = env.env_for_worker("w9")
    assert worker_env["RUNPOD_POD_ID"] == "w9"
    assert "RUNPOD_API_KEY" not in worker_env, "the client key is not handed to workers"
    assert worker_env["RUNPOD_WEBHOOK_GET_JOB"].endswith("/job-take/$ID?gpu=local")


def test_unknown_endpoint_job_and_route_answer_404(endpoint: LocalEndpoint, api: Api) -> None:
    other = endpoint.url.rsplit("/", 1)[0] + "/nope"
    response = api.session.post(f"{other}/run", json={"input": {}}, timeout=10)
    assert response.status_code == 404 and "error" in response.json()
    for op in ("status/x-u1", "stream/x-u1"):
        assert api.get(op).status_code == 404
    for op in ("cancel/x-u1", "retry/x-u1"):
        assert api.post(op).status_code == 404
    missing = api.get("no-such-op")
    assert missing.status_code == 404 and "error" in missing.json()
    assert api.get("run").status_code == 405


def test_oversized_bodies_are_refused_with_413(api: Api) -> None:
    def body(size: int) -> bytes:
        prefix, suffix = b'{"input": {"blob": "', b'"}}'
        return prefix + b"a" * (size - len(prefix) - len(suffix)) + suffix

    headers = {"Content-Type": "application/json"}
    too_big = api.session.post(f"{api.url}/run", data=body(10_000_001), headers=headers, timeout=30)
    assert too_big.status_code == 413
    assert "10000000" in too_big.json()["error"]
    fits = api.session.post(f"{api.url}/run", data=body(10_000_000), headers=headers, timeout=30)
    assert fits.status_code == 200, "exactly 10 MB is allowed on /run"

    def chunked() -> Iterator[bytes]:  # no Content-Length: counted while reading
        data = body(20_000_001)
        for start in range(0, len(data), 1 << 20):
            yield data[start : start + (1 << 20)]

    sync = api.session.post(f"{api.url}/runsync", data=chunked(), headers=headers, timeout=30)
    assert sync.status_code == 413
    assert "20000000" in sync.json()["error"]


def test_malformed_requests_get_400_with_the_reason() -> None:
    with running_endpoint(workers=0, settings=EndpointSettings()) as ep:  # RunPod's policy ranges
        api = Api(ep)
        cases: list[tuple[Any, str]] = [
            ({"inputs": {}}, "'input'"),
            ([1, 2], "JSON object"),
            ({"input": {}, "policy": {"ttl": 5000}}, "policy.ttl"),
            ({"input": {}, "policy": {"executionTimeout": 1000}}, "policy.executionTimeout"),
            ({"input": {}, "policy": {"executionTimeout": "10s"}}, "milliseconds"),
            ({"input": {}, "webhook": "ftp://x"}, "webhook"),
            ({"input": {}, "s3Config": "x"}, "s3Config"),
        ]
        for body, needle in cases:
            response = api.post("run", body)
            assert response.status_code == 400, body
            assert needle in response.json()["error"], (body, response.json())
        json_type = {"Content-Type": "application/json"}
        not_json = api.session.post(f"{api.url}/run", data=b"{nope", headers=json_type, timeout=10)
        assert not_json.status_code == 400 and "not JSON" in not_json.json()["error"]
        ok = api.post("run", {"input": {}, "policy": {"ttl": 10_000, "executionTimeout": 5_000}})
        assert ok.status_code == 200


def test_runsync_returns_the_result_when_it_is_done_in_time(api: Api, worker: FakeWorker) -> None:
    answer: dict[str, Any] = {}

    def call() -> None:
        answer.update(api.post("runsync", {"input": {"n": 1}}).json())

    caller = threading.Thread(target=call)
    caller.start()
    job = worker.take_until()
    assert job["id"].startswith("sync-") and RUN_ID.match(job["id"][len("sync-") :])
    worker.done(job["id"], {"output": {"ok": True}})
    caller.join(10)
    assert answer["status"] == "COMPLETED"
    assert answer["output"] == {"ok": True}
    assert answer["id"] == job["id"]
    assert {"delayTime", "executionTime"} <= answer.keys()


def test_runsync_wait_expires_with_the_id_then_status_has_the_result(api: Api, worker: FakeWorker) -> None:
    started = time.monotonic()
    answer = api.post("runsync?wait=1000", {"input": {}}).json()
    assert time.monotonic() - started >= 0.95
    assert answer == {"id": answer["id"], "status": "IN_QUEUE"}
    worker.take_until()
    worker.done(answer["id"], {"output": 42})
    assert api.status(answer["id"])["output"] == 42


def test_cancel_of_a_queued_job(api: Api, worker: FakeWorker) -> None:
    job_id = api.run({})
    assert api.post(f"cancel/{job_id}").json() == {"id": job_id, "status": "CANCELLED"}
    assert api.status(job_id)["status"] == "CANCELLED"
    assert worker.take() is None, "a cancelled job is never handed out"
    assert api.post(f"cancel/{job_id}").json()["status"] == "CANCELLED"


def test_cancel_of_a_running_job_goes_through_the_stop_channel(api: Api, worker: FakeWorker) -> None:
    job_id = api.run({})
    worker.take_until()
    assert worker.stops() == [], "nothing to stop: the long-poll ends empty (204)"
    assert api.post(f"cancel/{job_id}").json() == {"id": job_id, "status": "CANCELLED"}
    assert worker.stops() == [job_id]
    assert worker.stops() == [job_id], "repeated until the worker lets the job go"
    worker.done(job_id, {"output": "too late"})
    assert api.status(job_id)["status"] == "CANCELLED", "a result after the cancel is dropped"
    assert worker.stops() == []


def test_a_stop_is_dropped_once_the_worker_asks_for_a_new_job(api: Api, worker: FakeWorker) -> None:
    job_id = api.run({})
    worker.take_until()
    api.post(f"cancel/{job_id}")
    assert worker.stops() == [job_id]
    assert worker.take(job_in_progress=0) is None
    assert worker.stops() == []


def test_purge_queue_removes_queued_jobs_only(api: Api, worker: FakeWorker) -> None:
    running = api.run({"n": 0})
    worker.take_until()
    queued = [api.run({"n": n}) for n in range(1, 4)]
    assert api.post("purge-queue").json() == {"removed": 3, "status": "completed"}
    assert api.status(running)["status"] == "IN_PROGRESS"
    assert {api.status(job_id)["status"] for job_id in queued} == {"CANCELLED"}
    assert worker.take() is None
    assert api.health()["jobs"]["inQueue"] == 0


def test_health_counts_jobs_and_workers(api: Api, worker: FakeWorker) -> None:
    health = api.health()
    assert health["jobs"] == {"completed": 0, "failed": 0, "inProgress": 0, "inQueue": 0, "retried": 0}
    assert health["workers"]["idle"] == 0 and health["workers"]["running"] == 0
    ids = [api.run({"n": n}) for n in range(3)]
    first = worker.take_until()["id"]
    health = api.health()
    assert health["jobs"]["inQueue"] == 2 and health["jobs"]["inProgress"] == 1
    assert health["workers"]["running"] == 1
    worker.done(first, {"output": 1})
    assert api.health()["workers"]["idle"] == 1
    second = worker.take_until()["id"]
    worker.done(second, {"error": "nope"})
    api.post(f"retry/{second}")
    health = api.health()["jobs"]
    assert health == {"completed": 1, "failed": 1, "inProgress": 0, "inQueue": 2, "retried": 1}
    assert set(ids) == {first, second, *ids}


def test_retry_requeues_a_failed_job_only(api: Api, worker: FakeWorker) -> None:
    job_id = api.run({"k": "v"})
    worker.take_until()
    worker.done(job_id, {"error": "flaky"})
    assert api.post(f"retry/{job_id}").json() == {"id": job_id, "status": "IN_QUEUE"}
    again = worker.take_until()
    assert again == {"id": job_id, "input": {"k": "v"}}
    worker.done(job_id, {"output": "fine now"})
    body = api.status(job_id)
    assert body["status"] == "COMPLETED" and body["output"] == "fine now"
    assert body["retries"] == 1
    assert "error" not in body
    refused = api.post(f"retry/{job_id}")
    assert refused.status_code == 400 and "FAILED or TIMED_OUT" in refused.json()["error"]


def test_execution_timeout_times_the_job_out_and_stops_it(api: Api, worker: FakeWorker) -> None:
    job_id = api.run({}, policy={"executionTimeout": 300})
    worker.take_until()
    body = api.wait(job_id, timeout=5)
    assert body["status"] == "TIMED_OUT"
    assert body["executionTime"] >= 290
    assert worker.stops() == [job_id]
    worker.done(job_id, {"output": "late"})
    assert api.status(job_id)["status"] == "TIMED_OUT"
    assert api.post(f"retry/{job_id}").json()["status"] == "IN_QUEUE", "TIMED_OUT jobs can be retried"


def test_ttl_deletes_queued_and_running_jobs(api: Api, worker: FakeWorker) -> None:
    queued = api.run({}, policy={"ttl": 300})
    submitted = time.monotonic()
    wait_until(lambda: api.get(f"status/{queued}").status_code == 404, what="the queued job to expire")
    assert time.monotonic() - submitted >= 0.3
    assert worker.take() is None, "an expired job is never handed out"

    running = api.run({"r": 1}, policy={"ttl": 1000})
    assert worker.take_until()["id"] == running
    wait_until(lambda: api.get(f"status/{running}").status_code == 404, what="the running job to expire")
    assert worker.stops() == [running], "the worker is told to stop a job whose ttl passed"


def test_status_ttl_query_shortens_the_life_of_a_result(api: Api, worker: FakeWorker) -> None:
    job_id = api.run({})
    worker.take_until()
    worker.done(job_id, {"output": 1})
    assert api.get(f"status/{job_id}?ttl=200").status_code == 200
    time.sleep(0.25)
    assert api.get(f"status/{job_id}").status_code == 404
    assert api.get(f"status/{job_id}?ttl=0").status_code == 404


def test_results_are_kept_for_the_retention_time_then_404() -> None:
    settings = replace(FAST, retention_s=1.5, sync_retention_s=0.3)
    with running_endpoint(workers=0, settings=settings) as ep:
        api, worker = Api(ep), FakeWorker(ep)
        assert api.post("runsync?wait=1000", {"input": {}}).json()["status"] == "IN_QUEUE"
        sync_id = worker.take_until()["id"]
        worker.done(sync_id, {"output": 2})
        job_id = api.run({})
        worker.take_until()
        worker.done(job_id, {"output": 1})
        done_at = time.monotonic()
        assert api.status(sync_id)["status"] == "COMPLETED"
        assert api.status(job_id)["status"] == "COMPLETED"
        time.sleep(0.35)
        assert api.get(f"status/{sync_id}").status_code == 404, "/runsync results are kept for less"
        assert api.status(job_id)["status"] == "COMPLETED"
        wait_until(lambda: api.get(f"status/{job_id}").status_code == 404, timeout=5, what="the 404")
        assert time.monotonic() - done_at >= 1.5
        assert api.post(f"retry/{job_id}").status_code == 404


def test_webhook_gets_the_status_body_and_is_retried(api: Api, worker: FakeWorker) -> None:
    with WebhookReceiver(fail_first=2) as hook:
        job_id = api.run({}, webhook=hook.url)
        worker.take_until()
        worker.done(job_id, {"output": {"answer": 42}})
        body = hook.wait()
        assert hook.attempts == 3, "two failures, then delivered on the third try"
        assert body == api.status(job_id)
    with WebhookReceiver(fail_first=5) as never:
        job_id = api.run({}, webhook=never.url)
        worker.take_until()
        worker.done(job_id, {"output": 1})
        wait_until(lambda: never.attempts == 3, what="three attempts")
        time.sleep(0.2)
        assert never.attempts == 3, "no more than 3 attempts in all"


def test_a_worker_that_lost_its_job_fails_it(api: Api, worker: FakeWorker) -> None:
    job_id = api.run({})
    worker.take_until()
    assert worker.take(job_in_progress=0) is None
    body = api.status(job_id)
    assert body["status"] == "FAILED"
    assert "without returning a result" in body["error"]


def test_workers_authenticating_with_the_sdk_config_file_key_are_let_in(tmp_path: Path) -> None:
    (tmp_path / ".runpod").mkdir()
    (tmp_path / ".runpod" / "config.toml").write_text('[default]\napi_key = "rpa_from_config_file"\n')
    with running_endpoint(workers=0, base_env={**scrubbed_env(), "HOME": str(tmp_path)}) as ep:
        assert FakeWorker(ep, key="rpa_from_config_file").take_response().status_code == 204
        assert FakeWorker(ep, key="something-else").take_response().status_code == 401


def test_the_cli_serves_until_interrupted(tmp_path: Path) -> None:
    proc, text = start_cli(tmp_path, "--endpoint-id", "cli")
    try:
        match = re.search(r"RUNPOD_ENDPOINT_URL=(http://127\.0\.0\.1:\d+/v2/cli)", text)
        assert match, text
        assert "RUNPOD_ENDPOINT_BASE_URL=" in text
        key = re.search(r"RUNPOD_API_KEY=(\S+)", text)
        assert key, text
        headers = {"Authorization": f"Bearer {key.group(1)}"}
        health = requests.get(f"{match.group(1)}/health", headers=headers, timeout=10)
        assert health.status_code == 200 and "jobs" in health.json()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


async def test_the_asyncio_api_serves_in_the_running_loop() -> None:
    import aiohttp

    async with LocalEndpoint(workers=0, base_env=scrubbed_env(), settings=FAST) as ep:
        assert ep.port > 0 and ep.url.endswith("/v2/local")
        client_auth = {"Authorization": f"Bearer {ep.api_key}"}
        async with aiohttp.ClientSession() as session:
            run = session.post(f"{ep.url}/run", json={"input": {"a": 1}}, headers=client_auth)
            async with run as response:
                job_id = (await response.json())["id"]
            take = f"{ep.url}/job-take/async-1?gpu=local&job_in_progress=0"
            async with session.get(take, headers={"Authorization": ep.worker_key}) as response:
                assert (await response.json())["id"] == job_id
            async with session.get(f"{ep.url}/health", headers=client_auth) as response:
                assert (await response.json())["workers"]["running"] == 1
        assert [s.id for s in ep.worker_states()] == ["async-1"], "call() works from the loop itself"
