"""The worker pool: N worker processes running the unmodified RunPod SDK loop, kept alive.

Each slot runs one process at a time (``python -u handler/handler.py`` by default, cwd the
repository root) with the protocol environment from ``env_for(worker_id)``. When it exits
the slot reports a :class:`WorkerExit` (the endpoint fails the job it was running, like
RunPod does when a worker dies) and starts a new process with a new id (``w1-0``,
``w1-1``, ...), after a back-off if it keeps dying before it ever asked for a job.

Processes get their own session (process group): a worker that dies leaves the SDK's
heartbeat process behind, and killing the group cleans it up. On Linux they also get a
parent-death signal, so an endpoint that is killed does not leave workers polling nothing.
Stopping a worker is graceful first (its long-polls are answered, then SIGTERM, which the SDK
turns into a clean exit that runs ComfyUI's shutdown) and SIGKILL after ``worker_grace_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from handler.supervisor import describe_returncode
from local_endpoint.settings import EndpointSettings
from local_endpoint.workers import WorkerBoard

log = logging.getLogger("local_endpoint.pool")
worker_log = logging.getLogger("local_endpoint.worker")

LOG_TAIL_LINES = 40
_LINE_LIMIT = 1024 * 1024


@dataclass(frozen=True)
class WorkerExit:
    """A worker process ended: who, how, whether we asked it to, its last log lines."""

    worker_id: str
    returncode: int
    planned: bool
    log_tail: tuple[str, ...] = ()

    def describe(self) -> str:
        """``exit code 1``, or ``killed by SIGKILL (exit code 137)`` as a shell would say."""
        if self.returncode < 0:
            return f"{describe_returncode(self.returncode)} (exit code {128 - self.returncode})"
        return f"exit code {self.returncode}"


LineSink = Callable[[str, str], None]


class _WorkerProtocol(asyncio.SubprocessProtocol):
    """Splits the worker's output into lines and reports its exit the moment it happens.

    Not ``asyncio.subprocess.Process.wait()``: on Python 3.11 that also waits for the output
    pipe to close, which never happens while the SDK's heartbeat process (a child of the
    worker, holding its stdout) outlives a killed worker.
    """

    def __init__(self, on_line: Callable[[str], None], exited: asyncio.Future[int]) -> None:
        self.on_line = on_line
        self.exited = exited
        self.transport: asyncio.SubprocessTransport | None = None
        self._buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.SubprocessTransport)
        self.transport = transport

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        self._buffer += data.encode() if isinstance(data, str) else data
        while (end := self._buffer.find(b"\n")) >= 0:
            self._emit(self._buffer[:end])
            del self._buffer[: end + 1]
        if len(self._buffer) > _LINE_LIMIT:
            self._emit(self._buffer)
            self._buffer.clear()

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if self._buffer:
            self._emit(self._buffer)
            self._buffer.clear()

    def process_exited(self) -> None:
        assert self.transport is not None
        returncode = self.transport.get_returncode()
        if not self.exited.done():
            self.exited.set_result(returncode if returncode is not None else -1)

    def _emit(self, raw: bytes | bytearray) -> None:
        self.on_line(bytes(raw).decode("utf-8", "replace").rstrip("\r"))


@dataclass(eq=False)
class WorkerProcess:
    """One incarnation of a slot's worker."""

    slot: int
    worker_id: str
    transport: asyncio.SubprocessTransport
    exited: asyncio.Future[int]
    started_at: float = field(default_factory=time.monotonic)
    planned_exit: bool = False
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_TAIL_LINES))

    @property
    def pid(self) -> int:
        return self.transport.get_pid()

    @property
    def running(self) -> bool:
        return not self.exited.done()


def _log_line(worker_id: str, line: str) -> None:
    worker_log.info("[%s] %s", worker_id, line)


class WorkerPool:
    """Starts, watches, restarts and stops the worker processes of one endpoint."""

    def __init__(
        self,
        *,
        size: int,
        command: Sequence[str],
        cwd: Path,
        env_for: Callable[[str], Mapping[str, str]],
        board: WorkerBoard,
        settings: EndpointSettings,
        on_exit: Callable[[WorkerExit], None],
        line_sink: LineSink | None = None,
    ) -> None:
        self.size = size
        self.command = list(command)
        self.cwd = cwd
        self.env_for = env_for
        self.board = board
        self.settings = settings
        self.on_exit = on_exit
        self.line_sink = line_sink or _log_line
        self.restarts = 0
        self._processes: dict[str, WorkerProcess] = {}
        self._slots: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start every slot (returns at once; processes need a few seconds to be ready)."""
        loop = asyncio.get_running_loop()
        self._slots = [
            loop.create_task(self._run_slot(slot), name=f"worker-slot-{slot}")
            for slot in range(1, self.size + 1)
        ]

    async def stop(self) -> None:
        """Stop every worker (graceful, then SIGKILL) and wait for the slots to end."""
        self._stopping.set()
        for proc in list(self._processes.values()):
            self._terminate(proc)
        if self._slots:
            await asyncio.gather(*self._slots, return_exceptions=True)

    def recycle(self, worker_id: str) -> bool:
        """Replace a worker after its job (``stopPod``); False if it is not one of ours."""
        proc = self._processes.get(worker_id)
        if proc is None:
            return False
        self._terminate(proc)
        return True

    def kill(self, worker_id: str, sig: int = signal.SIGKILL) -> bool:
        """Send ``sig`` to a worker process, as a crash would (for tests and drills)."""
        proc = self._processes.get(worker_id)
        if proc is None or not proc.running:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        return True

    def processes(self) -> list[WorkerProcess]:
        """The worker processes running now, by slot."""
        return sorted(self._processes.values(), key=lambda p: p.slot)

    @property
    def restarting(self) -> int:
        """Slots whose process is down (exited, waiting to be restarted or starting anew)."""
        return sum(1 for task in self._slots if not task.done()) - len(self._processes)

    # -- one slot ----------------------------------------------------------------------------

    async def _run_slot(self, slot: int) -> None:
        generation = 0
        backoff = self.settings.restart_backoff_s
        while not self._stopping.is_set():
            worker_id = f"w{slot}-{generation}"
            generation += 1
            state = self.board.add(worker_id, None)
            try:
                proc = await self._spawn(slot, worker_id)
            except OSError as exc:
                log.error("cannot start worker %s (%s): %s", worker_id, " ".join(self.command), exc)
                self.board.retire(worker_id)
                await self._pause(backoff)
                backoff = min(backoff * 2, self.settings.restart_backoff_max_s)
                continue
            state.pid = proc.pid
            self._processes[worker_id] = proc
            log.info("worker %s started (pid %d)", worker_id, proc.pid)
            if self._stopping.is_set():
                self._terminate(proc)
            await self._watch(proc)
            if self._stopping.is_set():
                return
            self.restarts += 1
            if proc.planned_exit:
                continue
            if state.ready_at is None:  # died before its first job-take: do not spin
                await self._pause(backoff)
                backoff = min(backoff * 2, self.settings.restart_backoff_max_s)
            else:
                backoff = self.settings.restart_backoff_s
                await self._pause(backoff)

    async def _spawn(self, slot: int, worker_id: str) -> WorkerProcess:
        loop = asyncio.get_running_loop()
        exited: asyncio.Future[int] = loop.create_future()
        tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)

        def on_line(line: str) -> None:
            tail.append(line)
            self.line_sink(worker_id, line)

        transport, _ = await loop.subprocess_exec(
            lambda: _WorkerProtocol(on_line, exited),
            *self.command,
            cwd=self.cwd,
            env=dict(self.env_for(worker_id)),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent(),
        )
        return WorkerProcess(slot=slot, worker_id=worker_id, transport=transport, exited=exited, tail=tail)

    async def _watch(self, proc: WorkerProcess) -> None:
        """Wait for the worker to exit, clean up its process group and report the exit."""
        returncode = await asyncio.shield(proc.exited)
        _kill_group(proc.pid)  # the SDK's heartbeat process, and anything else it left
        await asyncio.sleep(0.05)  # let the last output lines arrive
        proc.transport.close()
        self._processes.pop(proc.worker_id, None)
        self.board.retire(proc.worker_id)
        report = WorkerExit(proc.worker_id, returncode, proc.planned_exit, tuple(proc.tail))
        level = logging.INFO if proc.planned_exit else logging.WARNING
        log.log(level, "worker %s ended: %s", proc.worker_id, report.describe())
        try:
            self.on_exit(report)
        except Exception:  # a bug there must not stop the slot from restarting its worker
            log.exception("handling the exit of worker %s failed", proc.worker_id)

    def _terminate(self, proc: WorkerProcess) -> None:
        """Ask a worker to exit: release its long-polls, SIGTERM, SIGKILL after the grace."""
        if proc.planned_exit:
            return
        proc.planned_exit = True
        self.board.release(proc.worker_id)
        if proc.running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
        asyncio.get_running_loop().call_later(self.settings.worker_grace_s, self._force, proc)

    @staticmethod
    def _force(proc: WorkerProcess) -> None:
        if proc.running:
            log.warning("worker %s did not exit after SIGTERM; killing it", proc.worker_id)
            _kill_group(proc.pid)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


_PR_SET_PDEATHSIG = 1


@functools.cache
def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGTERM the worker when the endpoint process dies."""
    if not sys.platform.startswith("linux"):
        return None
    try:  # resolved here, in the parent: the forked child only makes the call
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def set_pdeathsig() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return set_pdeathsig
