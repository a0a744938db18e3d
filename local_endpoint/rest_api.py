"""RunPod's REST API v2 observability paths, for the local endpoint's own workers.

``GET /v2/serverless/{id}/workers``, ``/releases``, ``/workers/{workerId}/logs`` (Server-Sent Events, live,
resumable with ``Last-Event-ID``), and ``/v2/billing/serverless`` and ``/v2/billing/network-volumes``
(no records: a local endpoint costs nothing), in the shapes of ``openapi-v2.json`` (the tests validate every
answer against it). So ``RUNPOD_ENDPOINT_URL=http://127.0.0.1:8000/v2/local invoke logs --follow`` and the
other observability tasks work without a RunPod account.

Auth as on the job API (the same key, ``Authorization: Bearer``); errors are RFC 9457 problem objects
(``application/problem+json``) as REST v2 answers them. The routes only read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from local_endpoint.http import key_matches
from local_endpoint.releases import ReleaseBook
from local_endpoint.worker_logs import WorkerLog, WorkerLogBook
from local_endpoint.workers import WorkerState

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
KEEPALIVE_S = 15.0
TITLES = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}


def problem(status: int, detail: str) -> web.Response:
    body = {"title": TITLES.get(status, "Error"), "status": status, "detail": detail}
    return web.json_response(body, status=status, content_type="application/problem+json")


class RestAPI:
    """The observability routes of one local endpoint."""

    def __init__(
        self,
        *,
        endpoint_id: str,
        api_key: str,
        workers: Callable[[], list[WorkerState]],
        busy: Callable[[], set[str]],
        logs: WorkerLogBook,
        releases: ReleaseBook,
        image: Callable[[], str],
    ) -> None:
        self.endpoint_id = endpoint_id
        self.api_key = api_key
        self.workers = workers
        self.busy = busy
        self.logs = logs
        self.releases = releases
        self.image = image

    def routes(self) -> list[web.RouteDef]:
        base = "/v2/serverless/{endpoint_id}"
        return [
            web.get(f"{base}/workers", self._guarded(self.list_workers), allow_head=False),
            web.get(f"{base}/releases", self._guarded(self.list_releases), allow_head=False),
            web.get(f"{base}/workers/{{worker_id}}/logs", self._guarded(self.worker_logs), allow_head=False),
            web.get("/v2/billing/serverless", self._guarded(self.billing), allow_head=False),
            web.get("/v2/billing/network-volumes", self._guarded(self.billing), allow_head=False),
        ]

    def _guarded(self, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            if not key_matches(request.headers.get("Authorization"), [self.api_key], bearer=True):
                return problem(401, "send 'Authorization: Bearer <API key>' (the local endpoint's key)")
            endpoint = request.match_info.get("endpoint_id")
            if endpoint is not None and endpoint != self.endpoint_id:
                return problem(404, f"serverless endpoint {endpoint} not found")
            return await handler(request)

        return guarded

    # -- workers and releases ----------------------------------------------------------------

    def _worker_views(self) -> list[dict[str, Any]]:
        busy = self.busy()
        now_mono, now = time.monotonic(), datetime.now(UTC)
        version = self.releases.version
        views = []
        for w in self.workers():
            status = "INITIALIZING" if w.ready_at is None else ("RUNNING" if w.id in busy else "IDLE")
            up = max(0, int(now_mono - w.started_at))
            views.append(
                {
                    "id": w.id,
                    "status": status,
                    "isStale": False,  # a local worker always runs this start's code
                    "version": version,
                    "gpuCount": 0,
                    "image": self.image() if w.managed else None,
                    "uptimeSeconds": up,
                    "gpuTypeId": None,
                    "dataCenterId": "local",
                    "startedAt": (now - timedelta(seconds=up)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
            )
        return views

    async def list_workers(self, request: web.Request) -> web.Response:
        workers = self._worker_views()
        statuses = ("running", "idle", "initializing", "throttled", "unhealthy")
        summary = {s: sum(1 for w in workers if w["status"] == s.upper()) for s in statuses}
        summary["total"] = len(workers)
        return web.json_response(
            {"workers": workers, "summary": summary, "endpointVersion": self.releases.version}
        )

    async def list_releases(self, request: web.Request) -> web.Response:
        workers = self._worker_views()
        version = self.releases.version
        releases = [
            {**r, "workerCount": len(workers) if r["version"] == version else 0}
            for r in self.releases.releases
        ]
        return web.json_response(
            {
                "endpointVersion": version,
                "rollout": {
                    "inProgress": False,
                    "workersOnLatest": len(workers),
                    "workersTotal": len(workers),
                    "percentOnLatest": 100 if workers else 0,
                },
                "releases": releases,
            }
        )

    # -- logs --------------------------------------------------------------------------------

    async def worker_logs(self, request: web.Request) -> web.StreamResponse:
        """Backfill (``tail``/``since``/``Last-Event-ID``), then live lines until the worker exits."""
        worker_id = request.match_info["worker_id"]
        log = self.logs.get(worker_id)
        if log is None:
            return problem(404, f"worker {worker_id} of endpoint {self.endpoint_id} not found")
        query = request.query
        source = query.get("source")
        if source not in (None, "container", "system"):
            return problem(400, "source must be container or system")
        try:
            tail = int(query.get("tail", "100"))
            if not 0 <= tail <= 5000:
                raise ValueError
        except ValueError:
            return problem(400, "tail must be an integer from 0 to 5000")
        after = request.headers.get("Last-Event-ID") or None
        try:
            events = WorkerLogBook.select(
                log, after=after, since=query.get("since"), tail=tail, source=source
            )
        except ValueError:
            return problem(400, "since and Last-Event-ID must be RFC 3339 times (2026-06-01T12:00:00Z)")
        if log.ended and after is not None and not events:
            return problem(404, f"worker {worker_id} has exited and its log has no line after {after}")
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "Connection": "keep-alive",
                "X-Accel-Buffering": "no",
            }
        )
        cursor = log.events[-1]["ts"] if log.events else None  # the backfill covers every line up to here
        await response.prepare(request)
        # The client going away (Ctrl+C, a dropped connection) is not an error.
        with contextlib.suppress(ConnectionResetError):
            await self._stream(response, log, events, cursor, source)
        return response

    async def _stream(
        self,
        response: web.StreamResponse,
        log: WorkerLog,
        events: list[dict[str, str]],
        cursor: str | None,
        source: str | None,
    ) -> None:
        while True:
            for event in events:
                await response.write(_sse(event))
            log.changed.clear()  # before reading: a line added after this sets it again
            events = (
                [e for e in WorkerLogBook.select(log, after=cursor) if source in (None, e["source"])]
                if cursor
                else [e for e in log.events if source in (None, e["source"])]
            )
            cursor = log.events[-1]["ts"] if log.events else cursor
            if events:
                continue
            if log.ended:
                break
            try:
                await asyncio.wait_for(log.changed.wait(), KEEPALIVE_S)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
        await response.write_eof()

    # -- billing -----------------------------------------------------------------------------

    async def billing(self, request: web.Request) -> web.Response:
        """No records (nothing is billed locally), with the window resolved as the spec describes."""
        size_name = request.query.get("bucketSize", "day")
        size = {"hour": timedelta(hours=1), "day": timedelta(days=1)}.get(size_name)
        if size is None:
            return problem(400, "bucketSize must be hour or day here")
        try:
            last_n = int(request.query.get("lastN", "30"))
        except ValueError:
            return problem(400, "lastN must be an integer")
        now = datetime.now(UTC)
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        end = midnight + size * ((now - midnight) // size + 1)
        start = end - size * max(1, last_n)
        volumes = request.path.endswith("network-volumes")
        amounts = (
            ["standardAmount", "highPerformanceAmount"]
            if volumes
            else ["gpuAmount", "cpuAmount", "diskAmount", "feeAmount"]
        )
        fmt = "%Y-%m-%dT%H:%M:%SZ"
        metadata: dict[str, Any] = {
            "query": {
                "startTime": start.strftime(fmt),
                "endTime": end.strftime(fmt),
                "bucketSize": size_name,
            },
            "recordCount": 0,
            "totals": dict.fromkeys(("totalAmount", *amounts), 0),
        }
        metadata["uniqueNetworkVolumeCount" if volumes else "uniqueServerlessCount"] = 0
        return web.json_response({"records": [], "metadata": metadata})


def _sse(event: dict[str, str]) -> bytes:
    return f"id: {event['ts']}\ndata: {json.dumps(event)}\n\n".encode()
