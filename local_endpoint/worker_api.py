"""The worker-facing protocol that RunPod's SDK speaks, so unmodified workers run against us.

Routes (``$ID`` is the worker id, the SDK appends the query parameters shown):

* ``GET  /v2/{ep}/job-take/{worker}?gpu=..&job_in_progress=0|1``: long-polled for up to
  ``take_hold_s``; 200 with ``{"id", "input", "s3Config"?}``, or 204 when nothing is queued.
  ``job-take-batch`` (``&batch_size=N``) answers a list.
* ``GET  /v2/{ep}/job-stop/{worker}?gpu=..``: long-polled for up to ``stop_hold_s``;
  ``{"jobsToStop": [...]}`` or 204.
* ``POST /v2/{ep}/job-done/{worker}/{job}?gpu=..&isStream=..``: the result, or a progress
  update (``{"status": "IN_PROGRESS", "output": ...}``). The body is a JSON string sent as
  ``application/x-www-form-urlencoded``, so it is parsed as JSON whatever the content type.
* ``POST /v2/{ep}/job-stream/{worker}/{job}``: one ``{"output": chunk}`` of a generator.
* ``GET  /v2/{ep}/ping/{worker}?gpu=..&job_id=..&runpod_version=..``: the heartbeat.

Every route needs ``Authorization: <worker key>`` (raw, as the SDK sends it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from local_endpoint.http import BodyTooLarge, json_error, key_matches, parse_json, read_limited
from local_endpoint.jobs import Job
from local_endpoint.settings import EndpointSettings
from local_endpoint.store import JobStore
from local_endpoint.workers import WorkerBoard, WorkerState

log = logging.getLogger("local_endpoint.worker_api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

LOST_JOB = (
    "worker {worker} asked for a new job without returning a result for this one "
    "(the result was lost on the way back)"
)


class WorkerAPI:
    """Route handlers of the worker protocol of one endpoint."""

    def __init__(
        self,
        *,
        endpoint_id: str,
        worker_keys: Sequence[str],
        settings: EndpointSettings,
        store: JobStore,
        board: WorkerBoard,
        on_ready: Callable[[WorkerState], None] | None = None,
        on_stop_pod: Callable[[str], None] | None = None,
    ) -> None:
        self.endpoint_id = endpoint_id
        self.worker_keys = list(worker_keys)
        self.settings = settings
        self.store = store
        self.board = board
        self.on_ready = on_ready
        self.on_stop_pod = on_stop_pod

    def routes(self) -> list[web.RouteDef]:
        prefix = "/v2/{endpoint_id}"
        guarded = self._guarded
        return [
            web.get(f"{prefix}/job-take/{{worker_id}}", guarded(self.job_take), allow_head=False),
            web.get(f"{prefix}/job-take-batch/{{worker_id}}", guarded(self.job_take_batch), allow_head=False),
            web.get(f"{prefix}/job-stop/{{worker_id}}", guarded(self.job_stop), allow_head=False),
            web.post(f"{prefix}/job-done/{{worker_id}}/{{job_id}}", guarded(self.job_done)),
            web.post(f"{prefix}/job-stream/{{worker_id}}/{{job_id}}", guarded(self.job_stream)),
            web.get(f"{prefix}/ping/{{worker_id}}", guarded(self.ping), allow_head=False),
        ]

    def _guarded(self, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            if not key_matches(request.headers.get("Authorization"), self.worker_keys, bearer=False):
                return json_error(401, "Unauthorized: not this endpoint's worker key")
            if request.match_info["endpoint_id"] != self.endpoint_id:
                return json_error(404, f"endpoint {request.match_info['endpoint_id']!r} does not exist")
            return await handler(request)

        return guarded

    # -- jobs out ----------------------------------------------------------------------------

    async def _take(self, request: web.Request, count: int) -> list[Job]:
        worker_id = request.match_info["worker_id"]
        state = self.board.lookup(worker_id)
        if state is None or state.stopping:
            return []
        if state.ready_at is None:
            state.ready_at = time.monotonic()
            if self.on_ready is not None:
                self.on_ready(state)
        if request.query.get("job_in_progress") == "0":
            # The SDK asks with job_in_progress=0 only once its last job left its task table:
            # stops for it are moot, and a job we still think it runs is lost.
            self.board.forget_stops(worker_id)
            for job in self.store.fail_running(worker_id, LOST_JOB.format(worker=worker_id)):
                log.warning("job %s: %s", job.id, job.error)

        def abort() -> bool:
            # A worker being stopped, dead, or gone from the connection gets no job: one
            # handed to a closed connection would be lost.
            transport = request.transport
            return self.board.is_gone(worker_id) or transport is None or transport.is_closing()

        state.takes_held += 1
        self.board.notify()
        try:
            first = await self.store.take(worker_id, self.settings.take_hold_s, abort=abort)
        finally:
            state.takes_held -= 1
            self.board.notify()
        jobs = [first] if first is not None else []
        while jobs and len(jobs) < count:
            more = await self.store.take(worker_id, 0, abort=abort)
            if more is None:
                break
            jobs.append(more)
        for job in jobs:
            log.info("job %s taken by worker %s", job.id, worker_id)
        return jobs

    async def job_take(self, request: web.Request) -> web.Response:
        jobs = await self._take(request, 1)
        if not jobs:
            return web.Response(status=204)
        return web.json_response(jobs[0].worker_payload())

    async def job_take_batch(self, request: web.Request) -> web.Response:
        try:
            count = max(1, int(request.query.get("batch_size", "1")))
        except ValueError:
            return json_error(400, "'batch_size' must be an integer")
        jobs = await self._take(request, count)
        if not jobs:
            return web.Response(status=204)
        return web.json_response([job.worker_payload() for job in jobs])

    async def job_stop(self, request: web.Request) -> web.Response:
        state = self.board.lookup(request.match_info["worker_id"])
        if state is None:
            return web.Response(status=204)
        job_ids = await self.board.wait_stops(state, self.settings.stop_hold_s)
        if not job_ids:
            return web.Response(status=204)
        log.info("worker %s told to stop %s", state.id, ", ".join(job_ids))
        return web.json_response({"jobsToStop": job_ids})

    # -- results in --------------------------------------------------------------------------

    async def _payload(self, request: web.Request) -> tuple[dict[str, Any], int] | web.Response:
        """The posted JSON object and its size in bytes (what the job store counts)."""
        try:
            raw = await read_limited(request, self.settings.worker_max_bytes)
            payload = parse_json(raw)
        except BodyTooLarge:
            return json_error(413, f"the body is larger than {self.settings.worker_max_bytes} bytes")
        except ValueError as exc:
            return json_error(400, str(exc))
        if not isinstance(payload, dict):
            return json_error(400, "the body must be a JSON object")
        return payload, len(raw)

    async def job_done(self, request: web.Request) -> web.Response:
        worker_id, job_id = request.match_info["worker_id"], request.match_info["job_id"]
        posted = await self._payload(request)
        if isinstance(posted, web.Response):
            return posted
        payload, size = posted
        if self.board.lookup(worker_id) is None:
            log.info("dropped a result for job %s from retired worker %s", job_id, worker_id)
            return web.json_response({})
        if payload.get("status") == "IN_PROGRESS":  # runpod.serverless.progress_update
            self.store.progress(worker_id, job_id, payload.get("output"))
            return web.json_response({})
        self.store.complete(worker_id, job_id, payload, size)
        self.board.forget_stops(worker_id, job_id)
        if payload.get("stopPod") and self.on_stop_pod is not None:
            log.info("worker %s asked to be replaced (stopPod) after job %s", worker_id, job_id)
            self.on_stop_pod(worker_id)
        return web.json_response({})

    async def job_stream(self, request: web.Request) -> web.Response:
        worker_id, job_id = request.match_info["worker_id"], request.match_info["job_id"]
        posted = await self._payload(request)
        if isinstance(posted, web.Response):
            return posted
        payload, size = posted
        if self.board.lookup(worker_id) is not None:
            self.store.stream_chunk(worker_id, job_id, payload.get("output"), size)
        return web.json_response({})

    async def ping(self, request: web.Request) -> web.Response:
        state = self.board.lookup(request.match_info["worker_id"])
        if state is not None:
            state.last_ping = time.monotonic()
        if request.query.get("status") == "unhealthy":
            log.error(
                "worker %s failed its fitness check %s: %s",
                request.match_info["worker_id"],
                request.query.get("check"),
                request.query.get("reason"),
            )
        return web.json_response({})
