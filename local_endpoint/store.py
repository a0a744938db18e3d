"""The job store: the state machine behind both the public API and the worker protocol.

Everything runs on the endpoint's event loop, so there are no locks: each transition is a
plain method that runs to completion. Deadlines (execution timeout, ttl, result retention)
are loop timers, and :meth:`JobStore.get` also checks them, so a 404 never comes late because
a timer fired a few milliseconds after its time.

The store knows nothing of HTTP, processes or webhooks; it reports two things through
callbacks: a job reached a final status (``on_final``: webhooks), and a worker must stop a
job it is running (``on_stop``: the job-stop channel).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from local_endpoint.jobs import Job, JobRequest, JobStatus, RequestError, new_job_id
from local_endpoint.settings import EndpointSettings

log = logging.getLogger("local_endpoint.store")

FinalCallback = Callable[[Job], None]
StopCallback = Callable[[str, str], None]


@dataclass
class Counters:
    """Cumulative counts for ``/health`` (RunPod counts TIMED_OUT jobs as failed)."""

    completed: int = 0
    failed: int = 0
    retried: int = 0


@dataclass
class _Deadlines:
    expires_at: float  # the job's ttl, counted from submission
    retain_until: float = math.inf  # result retention, once final
    deletion: asyncio.TimerHandle | None = None
    execution: asyncio.TimerHandle | None = None

    @property
    def delete_at(self) -> float:
        return min(self.expires_at, self.retain_until)

    def cancel(self) -> None:
        for handle in (self.deletion, self.execution):
            if handle is not None:
                handle.cancel()


class JobStore:
    """All jobs of one endpoint: queue, transitions, deadlines, counters."""

    def __init__(
        self,
        settings: EndpointSettings,
        *,
        on_final: FinalCallback | None = None,
        on_stop: StopCallback | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.counters = Counters()
        self._on_final = on_final
        self._on_stop = on_stop
        self._clock = clock
        self._jobs: dict[str, Job] = {}
        self._deadlines: dict[str, _Deadlines] = {}
        self._queue: deque[str] = deque()
        self._takers: set[asyncio.Future[None]] = set()
        #: Finished jobs still held, oldest first: the first to go when a cap is reached.
        self._finished: dict[str, None] = {}
        self._held_bytes = 0  # requests and results of every job held

    # -- public API side ---------------------------------------------------------------------

    def submit(self, request: JobRequest, *, sync: bool, size: int = 0) -> Job:
        """Queue a new job (``size``: its request body's bytes); idle workers are woken.

        Raises :class:`RequestError` with status 429 when the queue is full, or when the
        job or its bytes cannot be held even after forgetting every finished job.
        """
        self._make_room(size)
        now = self._clock()
        timeout_ms = request.execution_timeout_ms or self.settings.execution_timeout_ms
        job = Job(
            id=new_job_id(sync=sync),
            request=request,
            sync=sync,
            submitted_at=now,
            execution_timeout_s=timeout_ms / 1000,
            request_bytes=size,
        )
        self._jobs[job.id] = job
        self._held_bytes += size
        ttl_ms = request.ttl_ms or self.settings.ttl_ms
        self._deadlines[job.id] = _Deadlines(expires_at=now + ttl_ms / 1000)
        self._schedule_deletion(job)
        self._enqueue(job)
        return job

    def get(self, job_id: str) -> Job | None:
        """The job, or None when unknown or past its ttl or retention (then it is deleted)."""
        job = self._jobs.get(job_id)
        if job is not None and self._clock() >= self._deadlines[job_id].delete_at:
            self._delete(job)
            return None
        return job

    def set_ttl(self, job: Job, ttl_ms: int) -> None:
        """``/status?ttl=<ms>``: the job (or its result) is deleted ``ttl_ms`` from now."""
        self._deadlines[job.id].expires_at = self._clock() + ttl_ms / 1000
        self._schedule_deletion(job)

    async def wait_final(self, job: Job, timeout_s: float) -> None:
        """Wait until the job is final (or deleted), at most ``timeout_s``."""
        if job.status.final:
            return
        try:
            async with asyncio.timeout(timeout_s):
                await job.finished.wait()
        except TimeoutError:
            pass

    def cancel(self, job: Job) -> None:
        """Cancel a queued or running job (a running one is stopped on its worker)."""
        if job.status.final:
            return
        worker_id = job.worker_id if job.status is JobStatus.IN_PROGRESS else None
        self._finish(job, JobStatus.CANCELLED)
        if worker_id is not None:
            self._stop(worker_id, job.id)

    def retry(self, job: Job) -> None:
        """Queue a FAILED or TIMED_OUT job again, same id and input."""
        if job.status not in (JobStatus.FAILED, JobStatus.TIMED_OUT):
            raise RequestError(f"job {job.id} is {job.status}: only FAILED or TIMED_OUT jobs can be retried")
        job.status = JobStatus.IN_QUEUE
        job.queued_at = self._clock()
        job.worker_id = job.started_at = job.finished_at = job.error = None
        job.has_output = job.has_progress = job.stop_pod = False
        job.output = job.progress = None
        job.stream.clear()
        job.stream_read = 0
        self._held_bytes -= job.result_bytes
        job.result_bytes = 0
        self._finished.pop(job.id, None)
        job.retries += 1
        job.finished = asyncio.Event()
        self.counters.retried += 1
        deadlines = self._deadlines[job.id]
        deadlines.retain_until = math.inf
        self._schedule_deletion(job)
        self._enqueue(job)

    def purge(self) -> int:
        """Cancel every queued job (running ones go on); returns how many were removed."""
        queued = [job for job in self._jobs.values() if job.status is JobStatus.IN_QUEUE]
        for job in queued:
            self._finish(job, JobStatus.CANCELLED)
        self._queue.clear()
        return len(queued)

    def counts(self) -> dict[str, int]:
        """The ``jobs`` object of ``/health``."""
        in_queue = in_progress = 0
        for job in self._jobs.values():
            in_queue += job.status is JobStatus.IN_QUEUE
            in_progress += job.status is JobStatus.IN_PROGRESS
        c = self.counters
        return {
            "completed": c.completed,
            "failed": c.failed,
            "inProgress": in_progress,
            "inQueue": in_queue,
            "retried": c.retried,
        }

    def jobs(self) -> list[Job]:
        """Every job still held (for diagnostics and tests)."""
        return list(self._jobs.values())

    # -- worker side -------------------------------------------------------------------------

    async def take(self, worker_id: str, hold_s: float, *, abort: Callable[[], bool]) -> Job | None:
        """Hand the oldest queued job to ``worker_id``, waiting up to ``hold_s`` for one.

        ``abort`` is checked on every wake-up (see :meth:`wake_takers`), so a worker that is
        being stopped or has died is never handed a job.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + hold_s
        while not abort():
            job = self._pop_queued()
            if job is not None:
                self._start(job, worker_id)
                return job
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            waiter: asyncio.Future[None] = loop.create_future()
            self._takers.add(waiter)
            try:
                await asyncio.wait({waiter}, timeout=remaining)
            finally:
                self._takers.discard(waiter)
        return None

    def wake_takers(self) -> None:
        """Wake every waiting job-take (a job was queued, or a worker's state changed)."""
        for waiter in self._takers:
            if not waiter.done():
                waiter.set_result(None)

    def running_job(self, worker_id: str) -> Job | None:
        """The job ``worker_id`` is running, if any."""
        for job in self._jobs.values():
            if job.status is JobStatus.IN_PROGRESS and job.worker_id == worker_id:
                return job
        return None

    def progress(self, worker_id: str, job_id: str, output: Any) -> bool:
        """A ``progress_update``: shown as ``output`` while the job runs. Late ones are dropped."""
        job = self._owned(worker_id, job_id)
        if job is None:
            return False
        job.has_progress, job.progress = True, output
        return True

    def stream_chunk(self, worker_id: str, job_id: str, output: Any, size: int = 0) -> bool:
        """A generator handler's chunk (``size``: bytes as posted), for ``/stream``."""
        job = self._owned(worker_id, job_id)
        if job is None:
            return False
        job.stream.append(output)
        self._add_result_bytes(job, size)
        return True

    def complete(self, worker_id: str, job_id: str, result: dict[str, Any], size: int = 0) -> Job | None:
        """The worker's final result: FAILED when it carries a truthy ``error``, else COMPLETED.

        ``size`` is the result's bytes as posted: past ``max_held_bytes`` held in all, the
        oldest other finished jobs are forgotten. A result for a job that is no longer this
        worker's (cancelled, timed out, retried elsewhere, deleted) is dropped, like RunPod
        drops it. Returns the finished job.
        """
        job = self._owned(worker_id, job_id)
        if job is None:
            log.info("dropped a result for job %s from worker %s: not its running job", job_id, worker_id)
            return None
        self._add_result_bytes(job, size)
        error = result.get("error")
        if "output" in result:
            job.has_output, job.output = True, result["output"]
        if error:
            job.error = error if isinstance(error, str) else str(error)
        job.stop_pod = bool(result.get("stopPod"))
        self._finish(job, JobStatus.FAILED if error else JobStatus.COMPLETED)
        return job

    def fail_running(self, worker_id: str, reason: str) -> list[Job]:
        """Fail the job(s) ``worker_id`` was running (it died, or lost them)."""
        failed = [
            job
            for job in self._jobs.values()
            if job.status is JobStatus.IN_PROGRESS and job.worker_id == worker_id
        ]
        for job in failed:
            job.error = reason
            self._finish(job, JobStatus.FAILED)
        return failed

    def abandon_running(self, reason: str) -> list[Job]:
        """Fail every running job and tell its worker to stop it (the endpoint is stopping)."""
        running = [job for job in self._jobs.values() if job.status is JobStatus.IN_PROGRESS]
        for job in running:
            worker_id = job.worker_id
            job.error = reason
            self._finish(job, JobStatus.FAILED)
            if worker_id is not None:
                self._stop(worker_id, job.id)
        return running

    def close(self) -> None:
        """Cancel every timer and release waiters (the endpoint is stopping)."""
        for deadlines in self._deadlines.values():
            deadlines.cancel()
        for job in self._jobs.values():
            job.finished.set()
        self.wake_takers()

    # -- caps ----------------------------------------------------------------------------------

    def _make_room(self, incoming_bytes: int) -> None:
        """Room for one more job of ``incoming_bytes``: forget the oldest finished jobs, or 429."""
        limits = self.settings
        queued = sum(job.status is JobStatus.IN_QUEUE for job in self._jobs.values())
        if queued >= limits.max_queued_jobs:
            raise RequestError(
                f"the queue is full ({queued} jobs waiting, at most {limits.max_queued_jobs}); "
                "try again once some have run",
                status=429,
            )
        while len(self._jobs) >= limits.max_jobs or self._held_bytes + incoming_bytes > limits.max_held_bytes:
            if not self._forget_oldest_finished(keep=None):
                raise RequestError(
                    f"the endpoint holds as many jobs ({len(self._jobs)}, at most {limits.max_jobs}) "
                    f"or bytes ({self._held_bytes}, at most {limits.max_held_bytes}) as it may, "
                    "none of them finished; try again once some have run",
                    status=429,
                )

    def _add_result_bytes(self, job: Job, size: int) -> None:
        job.result_bytes += size
        self._held_bytes += size
        while self._held_bytes > self.settings.max_held_bytes and self._forget_oldest_finished(keep=job):
            pass

    def _forget_oldest_finished(self, keep: Job | None) -> bool:
        """Delete the oldest finished job other than ``keep``; False when there is none."""
        for job_id in self._finished:
            job = self._jobs[job_id]
            if job is not keep:
                self._delete(job, why="forgotten early: the endpoint's job or result cap was reached")
                return True
        return False

    # -- transitions -------------------------------------------------------------------------

    def _enqueue(self, job: Job) -> None:
        self._queue.append(job.id)
        self.wake_takers()

    def _pop_queued(self) -> Job | None:
        while self._queue:
            job = self.get(self._queue.popleft())
            if job is not None and job.status is JobStatus.IN_QUEUE:
                return job
        return None

    def _start(self, job: Job, worker_id: str) -> None:
        job.status = JobStatus.IN_PROGRESS
        job.worker_id = worker_id
        job.started_at = self._clock()
        deadlines = self._deadlines[job.id]
        retries = job.retries
        deadlines.execution = asyncio.get_running_loop().call_later(
            job.execution_timeout_s, self._execution_timeout, job, retries
        )

    def _execution_timeout(self, job: Job, retries: int) -> None:
        if job.status is not JobStatus.IN_PROGRESS or job.retries != retries or job.id not in self._jobs:
            return
        worker_id = job.worker_id
        job.error = (
            f"the job ran longer than its execution timeout ({round(job.execution_timeout_s * 1000)} ms)"
        )
        self._finish(job, JobStatus.TIMED_OUT)
        if worker_id is not None:
            self._stop(worker_id, job.id)

    def _finish(self, job: Job, status: JobStatus) -> None:
        now = self._clock()
        job.status = status
        job.finished_at = now
        if status is JobStatus.COMPLETED:
            self.counters.completed += 1
        elif status in (JobStatus.FAILED, JobStatus.TIMED_OUT):
            self.counters.failed += 1
        deadlines = self._deadlines[job.id]
        if deadlines.execution is not None:
            deadlines.execution.cancel()
            deadlines.execution = None
        self._finished.pop(job.id, None)
        self._finished[job.id] = None
        retention = self.settings.sync_retention_s if job.sync else self.settings.retention_s
        deadlines.retain_until = now + retention
        self._schedule_deletion(job)
        job.finished.set()
        log.info("job %s %s", job.id, status)
        if self._on_final is not None:
            self._on_final(job)

    def _schedule_deletion(self, job: Job) -> None:
        deadlines = self._deadlines[job.id]
        if deadlines.deletion is not None:
            deadlines.deletion.cancel()
        delay = max(0.0, deadlines.delete_at - self._clock())
        deadlines.deletion = asyncio.get_running_loop().call_later(delay, self._expire, job.id)

    def _expire(self, job_id: str) -> None:
        job = self._jobs.get(job_id)
        if job is not None and self._clock() >= self._deadlines[job_id].delete_at:
            self._delete(job)
        elif job is not None:  # the clock and the loop's timer disagree by a hair: try again
            self._schedule_deletion(job)

    def _delete(self, job: Job, why: str | None = None) -> None:
        """Forget a job (ttl or retention passed, or a cap); a running one is stopped on its worker."""
        worker_id = job.worker_id if job.status is JobStatus.IN_PROGRESS else None
        self._deadlines.pop(job.id).cancel()
        del self._jobs[job.id]
        self._finished.pop(job.id, None)
        self._held_bytes -= job.request_bytes + job.result_bytes
        job.finished.set()
        why = why or ("ttl passed" if not job.status.final else "result expired")
        log.info("job %s deleted (%s)", job.id, why)
        if worker_id is not None:
            self._stop(worker_id, job.id)

    def _stop(self, worker_id: str, job_id: str) -> None:
        if self._on_stop is not None:
            self._on_stop(worker_id, job_id)

    def _owned(self, worker_id: str, job_id: str) -> Job | None:
        job = self.get(job_id)
        if job is None or job.status is not JobStatus.IN_PROGRESS or job.worker_id != worker_id:
            return None
        return job
