"""Jobs queued from this ComfyUI, each followed by a background task until its outputs are saved.

The browser only asks this server (``/runpod/status``, ``/runpod/results``): one task per job
polls the endpoint, so a closed tab does not lose a result, and the outputs land in
ComfyUI's output folder (``runpod/<job id>/...``) exactly once, as if ComfyUI made them.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from .config import RunPodConfig
from .endpoint_client import EndpointClient
from .errors import EndpointError, JobFailed, JobWaitTimeout, job_error_of
from .graph import sort_by_depth
from .job_error import JobError
from .outputs import job_folder, save_outputs

log = logging.getLogger("comfy_runpod.jobs")

ClientFactory = Callable[[RunPodConfig], EndpointClient]
OUTPUT_SUBFOLDER = "runpod"


def default_client(config: RunPodConfig) -> EndpointClient:
    return EndpointClient(config.url or "", config.api_key)


@dataclass
class TrackedJob:
    """What this server knows of one job; ``status`` is COMPLETED only once outputs are saved."""

    id: str
    prompt: dict[str, Any]
    status: str = "IN_QUEUE"
    progress: dict[str, Any] | None = None
    error: JobError | None = None
    outputs: list[dict[str, Any]] | None = None
    created: float = field(default_factory=time.time)
    #: The worker that ran it (``workerId`` of /status): the overlay's "Worker log" reads its log.
    worker_id: str | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def done(self) -> bool:
        return self.task is None or self.task.done()

    def public_status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "done": self.done,
            "progress": self.progress,
            "worker_id": self.worker_id,
        }
        if self.error is not None:
            body["error"] = self.error.to_json()
        return body


class JobTracker:
    """Starts and remembers the follow-up task of each job (the latest ``keep`` jobs)."""

    def __init__(
        self,
        output_dir: Callable[[], Path],
        client_factory: ClientFactory = default_client,
        *,
        poll_s: float = 1.0,
        keep: int = 200,
    ) -> None:
        self.output_dir = output_dir
        self.client_factory = client_factory
        self.poll_s = poll_s
        self.keep = keep
        self.jobs: OrderedDict[str, TrackedJob] = OrderedDict()

    def get(self, job_id: str) -> TrackedJob | None:
        return self.jobs.get(job_id)

    def follow(self, job_id: str, prompt: dict[str, Any], config: RunPodConfig) -> TrackedJob:
        """Track a job the endpoint accepted and start its background task."""
        job = TrackedJob(job_id, prompt)
        self.jobs[job_id] = job
        self._forget_old()
        job.task = asyncio.get_running_loop().create_task(self._follow(job, config))
        return job

    def following(self) -> list[TrackedJob]:
        """The jobs whose follow-up task still runs."""
        return [job for job in self.jobs.values() if job.task is not None and not job.task.done()]

    async def close(self) -> None:
        """Stop every follow-up task (server shutdown, tests), saying which results stay remote."""
        jobs = self.following()
        for job in jobs:
            log.warning(
                "comfy-runpod: ComfyUI is stopping; stopped following RunPod job %s (%s): its outputs "
                "will not be saved to output/%s/%s (the endpoint keeps the result for a while: "
                "`invoke status %s`)",
                job.id,
                job.status,
                OUTPUT_SUBFOLDER,
                job.id,
                job.id,
            )
            assert job.task is not None
            job.task.cancel()
        await asyncio.gather(*(job.task for job in jobs if job.task), return_exceptions=True)

    def _forget_old(self) -> None:
        for job_id in list(self.jobs):
            if len(self.jobs) <= self.keep:
                break
            if self.jobs[job_id].done:
                del self.jobs[job_id]

    async def _follow(self, job: TrackedJob, config: RunPodConfig) -> None:
        def on_status(body: dict[str, Any]) -> None:
            status = body.get("status")
            if isinstance(body.get("workerId"), str):
                job.worker_id = body["workerId"]
            if isinstance(status, str) and status != "COMPLETED":
                job.status = status
            output = body.get("output")
            if status == "IN_PROGRESS" and isinstance(output, dict):
                job.progress = output

        try:
            async with self.client_factory(config) as client:
                final = await client.wait(
                    job.id, timeout_s=config.timeout_s, on_status=on_status, max_poll_s=self.poll_s
                )
            job.outputs = await self._save(job, final.get("output") or {})
            job.status = "COMPLETED"
        except JobFailed as exc:
            job.worker_id = str(exc.job["workerId"]) if exc.job.get("workerId") else job.worker_id
            job.status = str(exc.job.get("status") or "FAILED")
            job.error = exc.error
        except JobWaitTimeout as exc:  # the endpoint may still run it
            job.status = "TIMED_OUT"
            job.error = job_error_of(exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the task must end in a state the browser can show
            if not isinstance(exc, EndpointError):
                log.exception("following job %s failed", job.id)
            job.status = "ERROR"
            job.error = job_error_of(exc)
        finally:
            job.progress = None if job.status == "COMPLETED" else job.progress
        log.info("RunPod job %s ended %s", job.id, job.status)

    async def _save(self, job: TrackedJob, output: dict[str, Any]) -> list[dict[str, Any]]:
        """Save each output under ``<output dir>/runpod/<job id>/`` and describe it for the browser."""
        base = self.output_dir()
        folder = job_folder(base / OUTPUT_SUBFOLDER, job.id)
        entries: list[dict[str, Any]] = []
        for entry in output.get("outputs") or []:
            if not isinstance(entry, dict):
                continue
            described = {k: entry[k] for k in ("node_id", "kind", "mime", "text", "filename") if k in entry}
            described["node_id"] = str(entry.get("node_id", ""))
            # One entry at a time, so each saved path is matched to the entry it came from.
            [*paths] = await save_outputs({"outputs": [entry]}, folder)
            if paths:
                relative = paths[0].relative_to(base)
                subfolder = relative.parent.as_posix()
                described.update(
                    filename=relative.name,
                    subfolder=subfolder,
                    type="output",
                    url="/view?"
                    + urlencode({"filename": relative.name, "subfolder": subfolder, "type": "output"}),
                )
            entries.append(described)
        return sort_by_depth(entries, job.prompt)


def close_at_exit(
    tracker: JobTracker, loop: asyncio.AbstractEventLoop | None, timeout_s: float = 5.0
) -> None:
    """``atexit`` hook: ComfyUI 0.3.64 leaves its loop on Ctrl+C without cleaning up its web app.

    ``main.py`` catches the KeyboardInterrupt that stops ``run_until_complete`` and exits, so
    aiohttp's ``on_shutdown``/``on_cleanup`` never run; the stopped (not closed) loop is
    still usable here to cancel the follow-up tasks and close their HTTP sessions.
    """
    if loop is None or loop.is_closed() or loop.is_running() or not tracker.following():
        return
    try:
        loop.run_until_complete(asyncio.wait_for(tracker.close(), timeout_s))
    except Exception:  # never turn an exit into a traceback
        log.exception("comfy-runpod: closing the RunPod job tracker failed")


def install_shutdown_hooks(
    tracker: JobTracker,
    app: Any,
    loop: asyncio.AbstractEventLoop | None,
    at_exit: Callable[..., Any] = atexit.register,
) -> None:
    """Close ``tracker`` when ComfyUI stops: on the aiohttp app's shutdown, else at exit.

    ``app.on_shutdown`` covers hosts that clean up their ``AppRunner`` (embedders, later
    ComfyUI versions); ``at_exit`` covers ComfyUI 0.3.64's Ctrl+C. A SIGTERM or SIGKILL ends
    the process without either (Python runs no exit hooks then).
    """
    if app is not None:

        async def on_shutdown(_app: Any) -> None:
            await tracker.close()

        try:
            app.on_shutdown.append(on_shutdown)
        except (AttributeError, RuntimeError) as exc:  # no aiohttp app, or it already started
            log.debug("comfy-runpod: no aiohttp on_shutdown hook: %s", exc)
    at_exit(close_at_exit, tracker, loop)
