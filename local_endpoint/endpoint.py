"""``LocalEndpoint``: a RunPod serverless endpoint on 127.0.0.1, with real worker processes.

It wires the parts together: the :class:`JobStore` (jobs and their state machine), the
:class:`PublicAPI` (what clients call), the :class:`WorkerAPI` (what the SDK in each worker
calls), the :class:`WorkerPool` (the processes) and the :class:`WebhookSender`. Use it from
asyncio (``async with LocalEndpoint(...) as ep``) or from synchronous code, where it runs
its own event loop in a thread (``with LocalEndpoint(...) as ep``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import sys
import threading
import tomllib
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web

from custom_node.local_key import key_file
from local_endpoint.guard import HostPolicy
from local_endpoint.http import json_error
from local_endpoint.jobs import Job, JobStatus
from local_endpoint.keys import client_key, publish, withdraw
from local_endpoint.pool import LineSink, WorkerExit, WorkerPool
from local_endpoint.pool import _log_line as log_worker_line
from local_endpoint.public_api import PublicAPI
from local_endpoint.releases import ReleaseBook, snapshot
from local_endpoint.rest_api import RestAPI
from local_endpoint.settings import EndpointSettings
from local_endpoint.store import JobStore
from local_endpoint.webhooks import WebhookSender
from local_endpoint.worker_api import WorkerAPI
from local_endpoint.worker_logs import WorkerLogBook
from local_endpoint.workers import WorkerBoard, WorkerState

log = logging.getLogger("local_endpoint")
T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[1]
#: What the image runs; ``sys.executable`` so the worker gets this environment's packages.
DEFAULT_WORKER_COMMAND = (sys.executable, "-u", "handler/handler.py")


class LocalEndpoint:
    """A local RunPod serverless endpoint: the public job API, the worker protocol, N workers.

    Arguments:

    * ``endpoint_id``: the id in the URLs (``/v2/{endpoint_id}/run``).
    * ``workers``: how many worker processes to keep running (0: none, e.g. to drive the
      worker protocol yourself, or to attach workers started with :meth:`env_for_worker`).
    * ``worker_env``: environment for the handler (``COMFYUI_URL``, ``COMFYUI_INPUT_DIR``,
      ...), on top of ``base_env`` (default: this process's environment, less its
      ``RUNPOD_*`` variables, which would confuse the SDK).
    * ``api_key``: the key clients must send. ``None`` reads ``RUNPOD_API_KEY`` from this
      process's environment; unset, a random key is made for this run (:attr:`api_key`,
      :attr:`key_generated`). There is no way to turn the key off: any web page the user
      opens can reach 127.0.0.1.
    * ``publish_key``: write a generated key to its key file (``custom_node.local_key``),
      where the project's clients on this machine find it; removed on :meth:`stop`.
    * ``host``, ``port``: where to listen (port 0: a free one; see :attr:`port`).
    * ``allowed_hosts``: names besides ``localhost``, loopback IPs and ``host`` that requests
      may carry in ``Host`` (see :mod:`local_endpoint.guard`).
    * ``settings``: limits and timings (:class:`EndpointSettings`); ``retention_s`` and
      ``sync_retention_s`` override its result retention.
    * ``worker_command``, ``cwd``: the worker process (default ``python -u
      handler/handler.py`` in the repository root).
    * ``line_sink``: receives ``(worker_id, line)`` for each line a worker prints (default:
      the ``local_endpoint.worker`` logger); every line is also kept in :attr:`logs` for the
      REST v2 paths (``local_endpoint.rest_api``: workers, their logs, releases).
    * ``release_log``: a JSON file keeping the releases across restarts (one per start; see
      ``local_endpoint.releases``); None keeps them in memory.

    Attributes after :meth:`start`: :attr:`url` (``http://127.0.0.1:PORT/v2/{endpoint_id}``),
    :attr:`base_url` (``.../v2``, for ``runpod.endpoint_url_base``), :attr:`port`,
    :attr:`worker_key` (what workers authenticate with), :attr:`store`, :attr:`board`,
    :attr:`pool`, :attr:`recent_exits`. One start per instance.
    """

    def __init__(
        self,
        *,
        endpoint_id: str = "local",
        workers: int = 1,
        worker_env: Mapping[str, str] | None = None,
        api_key: str | None = None,
        publish_key: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        allowed_hosts: Sequence[str] = (),
        settings: EndpointSettings | None = None,
        retention_s: float | None = None,
        sync_retention_s: float | None = None,
        worker_command: Sequence[str] | None = None,
        cwd: Path | str = REPO_ROOT,
        base_env: Mapping[str, str] | None = None,
        line_sink: LineSink | None = None,
        release_log: Path | None = None,
    ) -> None:
        if workers < 0:
            raise ValueError("workers must be 0 or more")
        if not endpoint_id or "/" in endpoint_id:
            raise ValueError("endpoint_id must be a non-empty path segment")
        base = settings or EndpointSettings()
        overrides: dict[str, float] = {}
        if retention_s is not None:
            overrides["retention_s"] = retention_s
        if sync_retention_s is not None:
            overrides["sync_retention_s"] = sync_retention_s
        self.settings = EndpointSettings(**{**base.__dict__, **overrides}) if overrides else base
        self.endpoint_id = endpoint_id
        self.workers = workers
        self.extra_worker_env = dict(worker_env or {})
        self.api_key, self.key_generated = client_key(api_key, os.environ)
        self.publish_key = publish_key
        #: The key file written by :meth:`start` (``publish_key`` and a generated key), else None.
        self.key_path: Path | None = None
        self.host = host
        self.port = port
        self.host_policy = HostPolicy(host, allowed_hosts)
        self.worker_command = list(worker_command or DEFAULT_WORKER_COMMAND)
        self.cwd = Path(cwd)
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.line_sink = line_sink
        #: What each worker printed, for the REST v2 log stream (``rest_api``); one release per start.
        self.logs = WorkerLogBook()
        self.releases = ReleaseBook(release_log)
        self.worker_key = f"local-worker-{secrets.token_urlsafe(24)}"

        self.webhooks = WebhookSender(self.settings)
        self.store = JobStore(self.settings, on_final=self._on_final, on_stop=self._on_stop)
        self.board = WorkerBoard(self.settings, on_change=self.store.wake_takers)
        self.pool = WorkerPool(
            size=workers,
            command=self.worker_command,
            cwd=self.cwd,
            env_for=self.env_for_worker,
            board=self.board,
            settings=self.settings,
            on_exit=self._on_worker_exit,
            line_sink=self._keep_line,
        )
        #: The last worker exits, newest last (what died, how, its last log lines).
        self.recent_exits: deque[WorkerExit] = deque(maxlen=50)
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._thread_stop: asyncio.Event | None = None

    # -- addresses ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/v2``: RunPod's ``endpoint_url_base`` for the SDK client."""
        return f"http://{self.host}:{self.port}/v2"

    @property
    def url(self) -> str:
        """``http://HOST:PORT/v2/{endpoint_id}``: where ``/run``, ``/status/...`` live."""
        return f"{self.base_url}/{self.endpoint_id}"

    def env_for_worker(self, worker_id: str) -> dict[str, str]:
        """The full environment of a worker with id ``worker_id``.

        Pool processes get it; it also lets you start a worker by hand (a debugger, another
        machine on a tunnel): ``env $(...) python -u handler/handler.py``.
        """
        base = {k: v for k, v in self.base_env.items() if not k.startswith("RUNPOD_")}
        root = self.url
        protocol = {
            "RUNPOD_WEBHOOK_GET_JOB": f"{root}/job-take/$ID?gpu=local",
            "RUNPOD_WEBHOOK_POST_OUTPUT": f"{root}/job-done/$RUNPOD_POD_ID/$ID?gpu=local",
            "RUNPOD_WEBHOOK_POST_STREAM": f"{root}/job-stream/$RUNPOD_POD_ID/$ID?gpu=local",
            "RUNPOD_WEBHOOK_PING": f"{root}/ping/$RUNPOD_POD_ID?gpu=local",
            "RUNPOD_POD_ID": worker_id,
            "RUNPOD_POD_HOSTNAME": f"{worker_id}-local",
            "RUNPOD_ENDPOINT_ID": self.endpoint_id,
            "RUNPOD_AI_API_KEY": self.worker_key,
            # Offline: no TCP check to 8.8.8.8, no nvidia-smi, no CUDA checks.
            "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true",
            "RUNPOD_SKIP_GPU_CHECK": "true",
        }
        defaults = {"RUNPOD_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"}  # the SDK's default is DEBUG
        return {**base, **defaults, **self.extra_worker_env, **protocol}

    def worker_keys(self) -> list[str]:
        """Keys accepted on the worker routes: ours, and the one the SDK would prefer.

        RunPod's SDK sends the ``api_key`` of ``~/.runpod/config.toml`` (the worker's HOME)
        instead of ``RUNPOD_AI_API_KEY`` when that file exists; such workers are let in too.
        """
        keys = [self.worker_key]
        home = self.env_for_worker("probe").get("HOME")
        credentials = (Path(home) if home else Path.home()) / ".runpod" / "config.toml"
        try:
            with credentials.open("rb") as file:
                key = tomllib.load(file).get("default", {}).get("api_key")
        except (OSError, tomllib.TOMLDecodeError):
            key = None
        if isinstance(key, str) and key:
            log.info("workers will send the API key of %s (the SDK prefers it); accepting it", credentials)
            keys.append(key)
        return keys

    # -- asyncio lifecycle -------------------------------------------------------------------

    async def start(self) -> LocalEndpoint:
        """Listen, then start the workers (they need a few seconds: see :meth:`wait_ready`)."""
        self._loop = asyncio.get_running_loop()
        app = web.Application(middlewares=[self.host_policy.middleware, _json_not_found])
        public = PublicAPI(
            endpoint_id=self.endpoint_id,
            api_key=self.api_key,
            settings=self.settings,
            store=self.store,
            worker_health=self.worker_health,
        )
        worker = WorkerAPI(
            endpoint_id=self.endpoint_id,
            worker_keys=self.worker_keys(),
            settings=self.settings,
            store=self.store,
            board=self.board,
            on_stop_pod=self._on_stop_pod,
        )
        current = snapshot(self.cwd, self.worker_command, self.workers)
        self.releases.start(current)
        rest = RestAPI(
            endpoint_id=self.endpoint_id,
            api_key=self.api_key,
            workers=self.board.workers,
            busy=self._busy_workers,
            logs=self.logs,
            releases=self.releases,
            image=lambda: str(current["image"]),
        )
        app.add_routes(rest.routes() + public.routes() + worker.routes())
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self.host_policy.port = self.port
        if self.publish_key:
            self._publish_key()
        log.info("local endpoint %s listening at %s", self.endpoint_id, self.url)
        self.pool.start()
        return self

    def _publish_key(self) -> None:
        """Write a generated key to this port's key file; with a configured key, remove a stale
        one (clients prefer the file's key for a loopback URL)."""
        try:
            if self.key_generated:
                self.key_path = publish(self.port, self.api_key)
            else:
                key_file(self.port).unlink(missing_ok=True)
        except OSError as exc:  # clients then need the printed key; the endpoint still works
            log.warning("could not update the key file for the local clients: %s", exc)

    async def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until every worker slot has a process waiting for a job (a job-take held).

        Raises ``TimeoutError`` with the workers' last log lines when they do not get there.
        """
        if not await self.board.wait_for(self._all_waiting, timeout):
            tails = "\n".join(
                f"[{p.worker_id}] {line}" for p in self.pool.processes() for line in list(p.tail)[-15:]
            )
            raise TimeoutError(f"the workers were not ready after {timeout:g} s; last lines:\n{tails}")

    def _all_waiting(self) -> bool:
        processes = self.pool.processes()
        if len(processes) < self.workers:
            return False
        for proc in processes:
            state = self.board.get(proc.worker_id)
            if state is None or state.takes_held == 0:
                return False
        return True

    async def stop(self) -> None:
        """Stop the workers, then the server. Running jobs fail.

        Running jobs are stopped through the stop channel first: the SDK waits for a running
        job before it honours SIGTERM, and a worker killed after the grace period would leave
        its ComfyUI (spawn mode) running. Once the workers let their jobs go (a few seconds
        at most) they exit cleanly.
        """
        if self.store.abandon_running("the local endpoint stopped while this job was running"):
            grace = self.settings.stop_resend_s + 3.0
            await self.board.wait_for(lambda: not self.board.stops_pending(), timeout=grace)
        await self.pool.stop()
        for state in self.board.workers():
            self.board.release(state.id)
        self.store.close()
        await self.webhooks.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.key_path is not None:
            withdraw(self.key_path, self.api_key)
            self.key_path = None

    async def __aenter__(self) -> LocalEndpoint:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- in a thread, for synchronous callers ------------------------------------------------

    def start_in_thread(self, *, wait_ready: bool = True, timeout: float = 60.0) -> LocalEndpoint:
        """Run the endpoint on its own event loop in a daemon thread; returns once listening
        (and, with ``wait_ready``, once every worker waits for a job)."""
        if self._thread is not None:
            raise RuntimeError("this endpoint is already running in a thread")
        started: Future[None] = Future()
        self._thread = threading.Thread(
            target=self._serve_thread, args=(started,), name="local-endpoint", daemon=True
        )
        self._thread.start()
        started.result(timeout)
        if wait_ready:
            try:
                self.blocking(self.wait_ready(timeout))
            except BaseException:
                self.stop_thread()
                raise
        return self

    def stop_thread(self, timeout: float = 30.0) -> None:
        """Stop an endpoint started with :meth:`start_in_thread` and wait for its thread."""
        thread, loop, stop = self._thread, self._loop, self._thread_stop
        if thread is None or loop is None or stop is None:
            return
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)
        self._thread = None

    def blocking(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a coroutine on the endpoint's loop from another thread and return its result."""
        if self._loop is None:
            coroutine.close()
            raise RuntimeError("the endpoint is not running")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def call(self, func: Callable[[], T], timeout: float | None = 10.0) -> T:
        """Call ``func`` on the endpoint's loop (a consistent view of its state from a thread)."""

        async def run() -> T:
            return func()

        if self._loop is not None and _running_loop() is self._loop:
            return func()
        return self.blocking(run(), timeout)

    def __enter__(self) -> LocalEndpoint:
        return self.start_in_thread()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_thread()

    def _serve_thread(self, started: Future[None]) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            self._thread_stop = asyncio.Event()
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:
                started.set_exception(exc)
                loop.run_until_complete(self.stop())
                return
            started.set_result(None)
            loop.run_until_complete(self._thread_stop.wait())
            loop.run_until_complete(self.stop())
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            asyncio.set_event_loop(None)
            loop.close()

    # -- views and drills --------------------------------------------------------------------

    def _busy_workers(self) -> set[str]:
        return {str(job.worker_id) for job in self.store.jobs() if job.status is JobStatus.IN_PROGRESS}

    def _keep_line(self, worker_id: str, line: str) -> None:
        """Each line a worker prints: into its log (REST v2 ``getWorkerLogs``), then to ``line_sink``."""
        self.logs.add(worker_id, line)
        (self.line_sink or log_worker_line)(worker_id, line)

    def worker_health(self) -> dict[str, int]:
        """The ``workers`` object of ``/health``."""
        busy = self._busy_workers()
        states = self.board.workers()
        initializing = sum(1 for w in states if w.ready_at is None)
        running = sum(1 for w in states if w.ready_at is not None and w.id in busy)
        idle = sum(1 for w in states if w.ready_at is not None and w.id not in busy)
        return {
            "idle": idle,
            "initializing": initializing,
            "ready": idle,
            "running": running,
            "throttled": 0,
            "unhealthy": max(0, self.pool.restarting),
        }

    def worker_pids(self) -> dict[str, int]:
        """``{worker_id: pid}`` of the pool's processes now (thread-safe)."""
        return self.call(lambda: {p.worker_id: p.pid for p in self.pool.processes()})

    def worker_states(self) -> list[WorkerState]:
        """The workers the endpoint knows now (thread-safe)."""
        return self.call(self.board.workers)

    def kill_worker(self, worker_id: str, sig: int = signal.SIGKILL) -> bool:
        """Send ``sig`` (default SIGKILL) to a pool worker, as a crash would (thread-safe)."""
        return self.call(lambda: self.pool.kill(worker_id, sig))

    # -- wiring ------------------------------------------------------------------------------

    def _on_final(self, job: Job) -> None:
        if job.request.webhook:
            self.webhooks.send(job.request.webhook, job.status_body())

    def _on_stop(self, worker_id: str, job_id: str) -> None:
        self.board.request_stop(worker_id, job_id)

    def _on_stop_pod(self, worker_id: str) -> None:
        if not self.pool.recycle(worker_id):
            log.info("worker %s asked to be replaced but is not a pool process; ignoring", worker_id)

    def _on_worker_exit(self, report: WorkerExit) -> None:
        self.recent_exits.append(report)
        self.logs.end(report.worker_id, f"worker {report.worker_id} exited: {report.describe()}")
        if report.planned:
            reason = f"worker {report.worker_id} was stopped while running this job: {report.describe()}"
        else:
            reason = f"worker {report.worker_id} died while running this job: {report.describe()}"
        if report.log_tail:
            reason += "; its last log lines:\n" + "\n".join(report.log_tail[-10:])
        for job in self.store.fail_running(report.worker_id, reason):
            log.warning("job %s FAILED: worker %s %s", job.id, report.worker_id, report.describe())


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


@web.middleware
async def _json_not_found(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Unknown paths and methods answer JSON errors too, like the rest of the API."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return json_error(404, f"no such operation: {request.method} {request.path}")
    except web.HTTPMethodNotAllowed as exc:
        return json_error(
            405, f"{request.method} is not allowed here; use {', '.join(sorted(exc.allowed_methods))}"
        )
