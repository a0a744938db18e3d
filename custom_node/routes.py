"""The ``/runpod/...`` HTTP routes the frontend extension calls.

Handlers take their dependencies (config source, input folder, job tracker, listen names)
from a :class:`Deps` instead of importing ComfyUI, so tests mount them on a plain aiohttp app
and ``__init__`` mounts them on ``PromptServer.instance.routes``. ComfyUI's origin middleware
applies to these routes like to its own; nothing here adds CORS headers. Every route first
refuses a ``Host`` that is not this server's (DNS rebinding, see ``hosts``), POSTs then
anything but JSON.

Every error answer is ``{"error": {"code", "message", "details"}}``; the API key is never
part of an answer (errors carry the endpoint's message, which does not echo the key).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from .config import RunPodConfig
from .errors import EndpointError, EndpointHTTPError
from .graph import GraphCycleError, node_depths, sort_by_depth, upstream_closure
from .hosts import ALLOWED_HOSTS_ENV, allowed_names, host_allowed
from .inputs import InputTooLarge, collect_images
from .jobs import JobTracker, TrackedJob
from .outputs import valid_job_id
from .worker_log import WorkerLogError, recent_worker_log, worker_log_answer

log = logging.getLogger("comfy_runpod.routes")

PREFIX = "/runpod"


@dataclass
class Deps:
    """What the routes need from their host: read on each request, so config edits apply."""

    config: Callable[[], RunPodConfig]
    input_dir: Callable[[], Path]
    tracker: JobTracker
    #: The addresses ComfyUI listens on (``--listen``); names among them are this server's own.
    listen: Sequence[str] = ()


def _error(status: int, code: str, message: str, details: list[Any] | None = None) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message, "details": details or []}}, status=status
    )


def _not_json(request: web.Request) -> web.Response | None:
    """Refuse a POST that is not ``application/json``: it is what makes a browser ask first.

    A page on another site can send a "simple" cross-site POST (text/plain, form data) with no
    CORS preflight, and ComfyUI's origin check looks only at loopback hosts; these routes spend
    the user's money, so they take JSON only, which no cross-site page can send unasked.
    """
    if request.content_type == "application/json":
        return None
    return _error(
        415,
        "NOT_JSON",
        f"send Content-Type: application/json (got {request.content_type or 'none'}); "
        "these routes are for ComfyUI's own page",
    )


def _check_prompt(prompt: Any) -> str | None:
    if not isinstance(prompt, dict) or not prompt:
        return "'prompt' must be the API-format workflow (app.graphToPrompt().output), a non-empty object"
    bad = [str(k) for k, v in prompt.items() if not isinstance(v, dict) or "class_type" not in v]
    if bad:
        return f"nodes without a class_type: {', '.join(bad[:10])}"
    return None


def _targets(body: dict[str, Any], prompt: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The prompt cut to ``partial_execution_targets`` (ComfyUI's "Queue selected output nodes").

    ComfyUI 0.3.64's ``/prompt`` runs only those output nodes and what feeds them; the worker
    runs whole prompts, so the same cut is made here. Absent or null means the whole prompt.
    """
    targets = body.get("partial_execution_targets")
    if targets is None:
        return prompt, None
    if not isinstance(targets, list) or not all(isinstance(t, (str, int)) for t in targets):
        return prompt, "'partial_execution_targets' must be a list of node ids"
    wanted = [str(t) for t in targets]
    if not wanted:
        return prompt, None
    cut = upstream_closure(prompt, wanted)
    if not cut:
        return prompt, f"none of the selected output nodes ({', '.join(wanted[:10])}) is in the workflow"
    return cut, None


Handler = Callable[[web.Request], Awaitable[web.Response]]


def _own_host_only(deps: Deps) -> Callable[[Handler], Handler]:
    """Wrap a handler so that a request for a foreign ``Host`` gets 403 before it runs."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.Response:
            header = request.headers.get("Host")
            names = allowed_names(deps.listen, deps.config().allowed_hosts)
            if host_allowed(header, names):
                return await handler(request)
            log.warning(
                "refused %s %s for Host %r (not this server's name)", request.method, request.path, header
            )
            return _error(
                403,
                "HOST_NOT_ALLOWED",
                f"this ComfyUI does not answer /runpod requests for Host {str(header)[:100]!r}: open it by "
                f"IP address or localhost, or add that name to {ALLOWED_HOSTS_ENV} (comma-separated) or "
                "'allowed_hosts' in comfy-runpod.json",
            )

        return guarded

    return wrap


def add_routes(routes: web.RouteTableDef, deps: Deps) -> None:
    """Register the handlers on ``routes`` (``PromptServer.instance.routes`` inside ComfyUI)."""
    own_host = _own_host_only(deps)

    @routes.get(f"{PREFIX}/config")
    @own_host
    async def config(request: web.Request) -> web.Response:
        return web.json_response(deps.config().public())

    @routes.post(f"{PREFIX}/queue")
    @own_host
    async def queue(request: web.Request) -> web.Response:
        refused = _not_json(request)
        if refused:
            return refused
        cfg = deps.config()
        if not cfg.configured:
            return _error(503, "NOT_CONFIGURED", cfg.problem or "no endpoint configured")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "BAD_REQUEST", "the body must be JSON: {prompt, workflow}")
        prompt = body.get("prompt") if isinstance(body, dict) else None
        problem = _check_prompt(prompt)
        if problem:
            return _error(400, "BAD_REQUEST", problem)
        assert isinstance(prompt, dict) and isinstance(body, dict)
        prompt, problem = _targets(body, prompt)
        if problem:
            return _error(400, "BAD_REQUEST", problem)
        try:
            node_depths(prompt)  # a cycle would only fail later, on the worker
        except GraphCycleError as exc:
            return _error(400, "GRAPH_CYCLE", str(exc), [{"node_id": n} for n in exc.cycle])
        try:
            images = await asyncio.to_thread(collect_images, prompt, deps.input_dir())
        except InputTooLarge as exc:
            return _error(413, "INPUT_TOO_LARGE", str(exc))
        except OSError as exc:
            return _error(400, "INPUT_UNREADABLE", f"cannot read an input file: {exc}")
        job_input: dict[str, Any] = {"workflow": prompt}
        if images:
            job_input["images"] = images
        try:
            async with deps.tracker.client_factory(cfg) as client:
                queued = await client.run(job_input)
        except EndpointHTTPError as exc:
            code = "UNAUTHORIZED" if exc.status in (401, 403) else "ENDPOINT_REFUSED"
            return _error(502, code, str(exc))
        except EndpointError as exc:
            return _error(502, "ENDPOINT_UNREACHABLE", str(exc))
        job_id = str(queued.get("id", ""))
        if not valid_job_id(job_id):
            return _error(
                502, "ENDPOINT_REFUSED", f"the endpoint answered without a usable job id: {job_id!r}"
            )
        job = deps.tracker.follow(job_id, prompt, cfg)
        log.info("queued RunPod job %s (%d input files)", job_id, len(images))
        return web.json_response(
            {"id": job_id, "status": job.status, "inputs": [image["name"] for image in images]}
        )

    def _job_or_404(request: web.Request) -> TrackedJob | web.Response:
        job_id = request.match_info["job_id"]
        job = deps.tracker.get(job_id)
        if job is None:
            return _error(404, "UNKNOWN_JOB", f"no job {job_id!r} was queued from this ComfyUI")
        return job

    @routes.get(PREFIX + "/status/{job_id}")
    @own_host
    async def status(request: web.Request) -> web.Response:
        job = _job_or_404(request)
        if isinstance(job, web.Response):
            return job
        return web.json_response(job.public_status())

    @routes.get(PREFIX + "/results/{job_id}")
    @own_host
    async def results(request: web.Request) -> web.Response:
        job = _job_or_404(request)
        if isinstance(job, web.Response):
            return job
        if not job.done:
            return _error(409, "NOT_DONE", f"job {job.id} is {job.status}; ask /runpod/status until done")
        if job.error is not None:
            return web.json_response(
                {"id": job.id, "status": job.status, "error": job.error.to_json(), "text": job.error.text()}
            )
        try:
            outputs = sort_by_depth(job.outputs or [], job.prompt)
        except GraphCycleError as exc:
            return _error(400, "GRAPH_CYCLE", str(exc), [{"node_id": n} for n in exc.cycle])
        return web.json_response({"id": job.id, "status": job.status, "outputs": outputs})

    @routes.get(PREFIX + "/worker-log/{job_id}")
    @own_host
    async def worker_log(request: web.Request) -> web.Response:
        """The recent log of the worker that ran a job of this ComfyUI, read here with the server's key
        (``worker_log``); a GET that only reads, answered as JSON (no CORS: other sites cannot read it)."""
        job = _job_or_404(request)
        if isinstance(job, web.Response):
            return job
        if not job.worker_id:
            return _error(409, "NO_WORKER", f"job {job.id} is {job.status}: no worker has run it (yet)")
        try:
            events = await recent_worker_log(deps.config(), job.worker_id)
        except WorkerLogError as exc:
            return _error(502, "WORKER_LOG_UNAVAILABLE", f"worker {job.worker_id}: {exc}")
        return web.json_response(worker_log_answer(job.id, job.worker_id, events))

    @routes.post(PREFIX + "/cancel/{job_id}")
    @own_host
    async def cancel(request: web.Request) -> web.Response:
        refused = _not_json(request)
        if refused:
            return refused
        job = _job_or_404(request)
        if isinstance(job, web.Response):
            return job
        if job.done:
            return web.json_response({"id": job.id, "status": job.status})
        cfg = deps.config()
        try:
            async with deps.tracker.client_factory(cfg) as client:
                answer = await client.cancel(job.id)
        except EndpointError as exc:
            return _error(502, "ENDPOINT_ERROR", str(exc))
        return web.json_response({"id": job.id, "status": str(answer.get("status") or job.status)})
