"""A flood of requests or results cannot grow the local endpoint without bound.

Queued jobs are capped (429 beyond), held jobs are capped (the oldest finished go first, 429
when none is finished), and so are the bytes of requests and results held.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor

import requests

from local_endpoint import LocalEndpoint
from tests.local_endpoint_fixtures import FAST, Api, FakeWorker, running_endpoint


def submit(ep: LocalEndpoint, session: requests.Session, body: object = None) -> requests.Response:
    return session.post(
        f"{ep.url}/run",
        json=body if body is not None else {"input": {}},
        headers={"Authorization": f"Bearer {ep.api_key}"},
        timeout=30,
    )


def finish_one(worker: FakeWorker, output: object = 1) -> str:
    job = worker.take_until()
    worker.done(job["id"], {"output": output})
    return str(job["id"])


def test_a_flood_of_runs_fills_the_queue_then_gets_429() -> None:
    settings = dataclasses.replace(FAST, max_queued_jobs=20)
    with running_endpoint(workers=0, settings=settings) as ep:
        session = requests.Session()
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(lambda _: submit(ep, session), range(300)))
        statuses = [a.status_code for a in answers]
        assert statuses.count(200) == 20 and statuses.count(429) == 280, sorted(set(statuses))
        refused = next(a for a in answers if a.status_code == 429)
        assert "queue is full" in refused.json()["error"]
        api = Api(ep)
        assert api.health()["jobs"]["inQueue"] == 20
        assert ep.call(lambda: len(ep.store.jobs())) == 20, "refused requests leave nothing behind"

        # once a job has run, there is room for one more
        finish_one(FakeWorker(ep))
        assert submit(ep, session).status_code == 200
        assert submit(ep, session).status_code == 429


def test_held_jobs_are_capped_oldest_finished_first() -> None:
    settings = dataclasses.replace(FAST, max_jobs=5)
    with running_endpoint(workers=0, settings=settings) as ep:
        session, api, worker = requests.Session(), Api(ep), FakeWorker(ep)
        finished = []
        for _ in range(3):
            assert submit(ep, session).status_code == 200
            finished.append(finish_one(worker))
        queued = [submit(ep, session).json()["id"] for _ in range(2)]  # 5 held: 3 finished, 2 queued

        for _ in range(3):  # each new job pushes out the oldest finished one
            assert submit(ep, session).status_code == 200
        for job_id in finished:
            assert api.get(f"status/{job_id}").status_code == 404
        for job_id in queued:
            assert api.status(job_id)["status"] == "IN_QUEUE", "unfinished jobs are never dropped"

        full = submit(ep, session)  # 5 held, none finished
        assert full.status_code == 429 and "none of them finished" in full.json()["error"]


def test_held_bytes_are_capped_oldest_finished_first() -> None:
    settings = dataclasses.replace(FAST, max_held_bytes=250_000)
    with running_endpoint(workers=0, settings=settings) as ep:
        session, api, worker = requests.Session(), Api(ep), FakeWorker(ep)
        done = []
        for i in range(6):
            assert submit(ep, session).status_code == 200
            done.append(finish_one(worker, {"image": str(i) * 60_000}))  # ~60 KB each
        # 6 x 60 KB > 250 KB: the oldest results went, the newest are readable
        gone = [job_id for job_id in done if api.get(f"status/{job_id}").status_code == 404]
        assert gone == done[:2], gone
        latest = api.status(done[-1])
        assert latest["status"] == "COMPLETED" and latest["output"]["image"] == "5" * 60_000
        held = ep.call(lambda: sum(j.request_bytes + j.result_bytes for j in ep.store.jobs()))
        assert held <= 250_000


def test_a_request_bigger_than_the_byte_cap_is_refused_not_held() -> None:
    settings = dataclasses.replace(FAST, max_held_bytes=50_000)
    with running_endpoint(workers=0, settings=settings) as ep:
        big = submit(ep, requests.Session(), {"input": {"blob": "x" * 60_000}})
        assert big.status_code == 429
        assert ep.call(lambda: len(ep.store.jobs())) == 0
