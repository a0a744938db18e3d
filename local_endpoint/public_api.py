"""RunPod's public job API: ``/v2/{endpoint_id}/run``, ``runsync``, ``status``, ``stream``, ...

Each route checks the API key (``Authorization: Bearer <key>`` or the raw key) and the
endpoint id, then does one store operation. Bodies and statuses follow RunPod's documented
API (see the README's *Local endpoint* section for the few deviations).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from local_endpoint.guard import json_body_problem
from local_endpoint.http import BodyTooLarge, json_error, key_matches, parse_json, read_limited
from local_endpoint.jobs import Job, JobRequest, RequestError
from local_endpoint.settings import EndpointSettings
from local_endpoint.store import JobStore

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class PublicAPI:
    """Route handlers of the public job API of one endpoint."""

    def __init__(
        self,
        *,
        endpoint_id: str,
        api_key: str,
        settings: EndpointSettings,
        store: JobStore,
        worker_health: Callable[[], dict[str, int]],
    ) -> None:
        self.endpoint_id = endpoint_id
        self.api_key = api_key
        self.settings = settings
        self.store = store
        self.worker_health = worker_health

    def routes(self) -> list[web.RouteDef]:
        prefix = "/v2/{endpoint_id}"
        guarded = self._guarded
        return [
            web.post(f"{prefix}/run", guarded(self.run)),
            web.post(f"{prefix}/runsync", guarded(self.runsync)),
            web.get(f"{prefix}/status/{{job_id}}", guarded(self.status), allow_head=False),
            web.post(f"{prefix}/status/{{job_id}}", guarded(self.status)),
            web.get(f"{prefix}/stream/{{job_id}}", guarded(self.stream), allow_head=False),
            web.post(f"{prefix}/stream/{{job_id}}", guarded(self.stream)),
            web.post(f"{prefix}/cancel/{{job_id}}", guarded(self.cancel)),
            web.post(f"{prefix}/retry/{{job_id}}", guarded(self.retry)),
            web.post(f"{prefix}/purge-queue", guarded(self.purge_queue)),
            web.get(f"{prefix}/health", guarded(self.health), allow_head=False),
        ]

    def _guarded(self, handler: Handler) -> Handler:
        """Auth first (401), then the endpoint id (404), as RunPod answers a stranger; then a
        POST's body must be JSON (415, see :mod:`local_endpoint.guard`)."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            if not key_matches(request.headers.get("Authorization"), [self.api_key], bearer=True):
                return json_error(
                    401,
                    "Unauthorized: send 'Authorization: Bearer <API key>' (the key the local "
                    "endpoint printed when it started, or your RUNPOD_API_KEY)",
                )
            if request.match_info["endpoint_id"] != self.endpoint_id:
                return json_error(404, f"endpoint {request.match_info['endpoint_id']!r} does not exist")
            if request.method == "POST" and (problem := json_body_problem(request)) is not None:
                return json_error(415, problem)
            return await handler(request)

        return guarded

    # -- submitting --------------------------------------------------------------------------

    async def _submit(self, request: web.Request, limit: int, *, sync: bool) -> Job | web.Response:
        """Read, validate and queue a job; 413, 400 or 429 (queue or store full) otherwise."""
        try:
            raw = await read_limited(request, limit)
        except BodyTooLarge:
            return json_error(413, f"the request body is larger than this operation's limit of {limit} bytes")
        try:
            return self.store.submit(
                JobRequest.parse(parse_json(raw), self.settings), sync=sync, size=len(raw)
            )
        except RequestError as exc:
            return json_error(exc.status, str(exc))
        except ValueError as exc:
            return json_error(400, str(exc))

    async def run(self, request: web.Request) -> web.Response:
        job = await self._submit(request, self.settings.run_max_bytes, sync=False)
        if isinstance(job, web.Response):
            return job
        return web.json_response({"id": job.id, "status": str(job.status)})

    async def runsync(self, request: web.Request) -> web.Response:
        try:
            wait_s = self._wait_s(request)
        except ValueError:
            return json_error(400, "'wait' must be an integer number of milliseconds")
        job = await self._submit(request, self.settings.runsync_max_bytes, sync=True)
        if isinstance(job, web.Response):
            return job
        await self.store.wait_final(job, wait_s)
        if job.status.final:  # even if a cap made the store forget it a moment later
            return web.json_response(job.status_body())
        if self.store.get(job.id) is None:
            return _not_found(job.id)
        return web.json_response({"id": job.id, "status": str(job.status)})

    def _wait_s(self, request: web.Request) -> float:
        raw = request.query.get("wait")
        low, high = self.settings.runsync_wait_range_ms
        wait_ms = self.settings.runsync_wait_ms if raw is None else int(raw)
        return min(max(wait_ms, low), high) / 1000

    # -- one job -----------------------------------------------------------------------------

    def _job(self, request: web.Request) -> Job | web.Response:
        job_id = request.match_info["job_id"]
        job = self.store.get(job_id)
        return _not_found(job_id) if job is None else job

    async def status(self, request: web.Request) -> web.Response:
        job = self._job(request)
        if isinstance(job, web.Response):
            return job
        ttl = request.query.get("ttl")
        if ttl is not None:
            try:
                ttl_ms = int(ttl)
                if ttl_ms <= 0:
                    raise ValueError
            except ValueError:
                return json_error(400, "'ttl' must be a positive integer number of milliseconds")
            self.store.set_ttl(job, ttl_ms)
        return web.json_response(job.status_body())

    async def stream(self, request: web.Request) -> web.Response:
        job = self._job(request)
        if isinstance(job, web.Response):
            return job
        return web.json_response({"id": job.id, "status": str(job.status), "stream": job.take_stream()})

    async def cancel(self, request: web.Request) -> web.Response:
        job = self._job(request)
        if isinstance(job, web.Response):
            return job
        self.store.cancel(job)
        return web.json_response({"id": job.id, "status": str(job.status)})

    async def retry(self, request: web.Request) -> web.Response:
        job = self._job(request)
        if isinstance(job, web.Response):
            return job
        try:
            self.store.retry(job)
        except RequestError as exc:
            return json_error(exc.status, str(exc))
        return web.json_response({"id": job.id, "status": str(job.status)})

    # -- the endpoint ------------------------------------------------------------------------

    async def purge_queue(self, request: web.Request) -> web.Response:
        return web.json_response({"removed": self.store.purge(), "status": "completed"})

    async def health(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = {"jobs": self.store.counts(), "workers": self.worker_health()}
        return web.json_response(body)


def _not_found(job_id: str) -> web.Response:
    return json_error(404, f"request {job_id} does not exist (unknown, or its result has expired)")
