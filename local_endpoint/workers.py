"""What the endpoint knows about each worker: liveness, its long-polls, its pending stops.

A worker is known by the id in its URLs (``RUNPOD_POD_ID``). Pool processes are registered
by the pool before they start; any other id that speaks the protocol with the worker key is
registered on first contact as an *external* worker (one started by hand with
:meth:`local_endpoint.LocalEndpoint.worker_env`). Ids of pool processes that exited are
remembered as retired, so a late request from them is never handed a job.

Stop signals: RunPod's SDK long-polls ``/job-stop/`` and cancels the task of every job id it
gets. A stop that reaches the SDK before the job's task exists is ignored by it, so a stop is
repeated every ``stop_resend_s`` until the worker shows it let the job go (it asks for a new
job with ``job_in_progress=0``, posts a result, or exits).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from local_endpoint.settings import EndpointSettings


@dataclass(eq=False)
class WorkerState:
    """One worker process (or external worker) as seen from the endpoint."""

    id: str
    managed: bool
    pid: int | None = None
    started_at: float = field(default_factory=time.monotonic)
    ready_at: float | None = None  # first job-take: the SDK loop is running
    last_seen: float = field(default_factory=time.monotonic)
    last_ping: float | None = None
    takes_held: int = 0  # job-take long-polls being held right now
    stopping: bool = False
    #: job id -> when the stop was last handed out (-inf: not yet)
    stops: dict[str, float] = field(default_factory=dict)
    stop_wake: asyncio.Event = field(default_factory=asyncio.Event)


class WorkerBoard:
    """The registry of workers and their stop signals."""

    def __init__(self, settings: EndpointSettings, *, on_change: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self._workers: dict[str, WorkerState] = {}
        self._retired: set[str] = set()
        self._on_change = on_change  # wakes held job-takes so they re-check ``stopping``
        self._change: asyncio.Future[None] | None = None

    def add(self, worker_id: str, pid: int | None) -> WorkerState:
        """Register a pool process that is about to start."""
        state = WorkerState(id=worker_id, managed=True, pid=pid)
        self._workers[worker_id] = state
        return state

    def lookup(self, worker_id: str) -> WorkerState | None:
        """The worker behind a request; unknown ids become external workers, retired ones None."""
        if worker_id in self._retired:
            return None
        state = self._workers.get(worker_id)
        if state is None:
            state = self._workers[worker_id] = WorkerState(id=worker_id, managed=False)
        state.last_seen = time.monotonic()
        return state

    def get(self, worker_id: str) -> WorkerState | None:
        return self._workers.get(worker_id)

    def release(self, worker_id: str) -> None:
        """The worker is being stopped: answer its long-polls now, hand it no more jobs."""
        state = self._workers.get(worker_id)
        if state is not None:
            state.stopping = True
            state.stop_wake.set()
            self._changed()

    def retire(self, worker_id: str) -> None:
        """The worker's process exited: forget it, and refuse its id from now on."""
        state = self._workers.pop(worker_id, None)
        self._retired.add(worker_id)
        if state is not None:
            state.stopping = True
            state.stop_wake.set()
        self._changed()

    def is_gone(self, worker_id: str) -> bool:
        state = self._workers.get(worker_id)
        return state is None or state.stopping

    # -- stop signals ------------------------------------------------------------------------

    def request_stop(self, worker_id: str, job_id: str) -> None:
        """Tell ``worker_id`` to stop ``job_id`` (a cancel, a timeout, an expired ttl)."""
        state = self._workers.get(worker_id)
        if state is not None:
            state.stops.setdefault(job_id, -math.inf)
            state.stop_wake.set()

    def forget_stops(self, worker_id: str, job_id: str | None = None) -> None:
        """The worker let ``job_id`` (or every job) go: stop repeating the stop signal."""
        state = self._workers.get(worker_id)
        if state is None:
            return
        if job_id is None:
            state.stops.clear()
        else:
            state.stops.pop(job_id, None)
        self.notify()

    async def wait_stops(self, state: WorkerState, hold_s: float) -> list[str]:
        """Long-poll for the job ids ``state`` must stop: a list as soon as one is due, else []."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + hold_s
        resend = self.settings.stop_resend_s
        while True:
            now = loop.time()
            due = [job_id for job_id, sent in state.stops.items() if now - sent >= resend]
            if due:  # before ``stopping``: a worker being stopped must still drop its job
                for job_id in due:
                    state.stops[job_id] = now
                return due
            if state.stopping or now >= deadline:
                return []
            next_resend = min((sent + resend for sent in state.stops.values()), default=math.inf)
            state.stop_wake.clear()
            try:
                async with asyncio.timeout(max(0.0, min(deadline, next_resend) - now)):
                    await state.stop_wake.wait()
            except TimeoutError:
                pass

    def stops_pending(self) -> bool:
        """A pool worker has not yet let go of a job it was told to stop (external workers
        are not waited for: nothing here stops them)."""
        return any(state.stops for state in self._workers.values() if state.managed)

    # -- views -------------------------------------------------------------------------------

    def workers(self) -> list[WorkerState]:
        """Live workers: pool processes, and external workers seen recently."""
        horizon = time.monotonic() - self.settings.external_worker_timeout_s
        return [w for w in self._workers.values() if w.managed or w.last_seen >= horizon]

    def notify(self) -> None:
        """Some worker's state changed: wake :meth:`wait_for` callers."""
        if self._change is not None and not self._change.done():
            self._change.set_result(None)
        self._change = None

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` holds (re-checked on every change); False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            if self._change is None:
                self._change = loop.create_future()
            # the pool's process list changes without a notification: re-check now and then
            await asyncio.wait({self._change}, timeout=min(remaining, 0.25))
        return True

    def _changed(self) -> None:
        self.notify()
        if self._on_change is not None:
            self._on_change()
