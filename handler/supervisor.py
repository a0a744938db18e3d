"""The ComfyUI process: start, readiness, log tail, crash detection and restart.

Two implementations share one interface:

- ``ComfyProcess`` (spawn mode, the worker image): starts ``python main.py ...`` as a child,
  notices readiness within a few milliseconds of ComfyUI answering ``GET /system_stats``,
  echoes its output into the worker log and keeps the last lines, notices when it exits and
  restarts it with backoff.
- ``AttachedComfyUI`` (attach mode, ``COMFYUI_URL``): uses a ComfyUI someone else runs and
  spawns nothing.

States (``ComfyState``)::

    NEW ──start()──> STARTING ──answers──> READY ──process exits──> CRASHED
                        │  ^                                          │
          exits/timeout │  └──────────── RESTARTING <──backoff────────┘
                        v                    │ max_restarts consecutive failures
                     CRASHED ─────────────> FAILED      (the worker should be replaced)

Only the standard library is used: the worker starts ComfyUI before importing ``runpod``.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import logging
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import IO, Any, Protocol

from handler.errors import ComfyStartFailed
from handler.settings import Settings

log = logging.getLogger("comfy_runpod.supervisor")
comfy_log = logging.getLogger("comfy_runpod.comfyui")

# Lines after which ComfyUI is about to answer: probe at once instead of at the next tick.
_READY_HINTS = ("To see the GUI go to", "Starting server")


class ComfyState(enum.Enum):
    NEW = "new"  # not started
    STARTING = "starting"  # process spawned, not answering yet
    READY = "ready"  # answering GET /system_stats
    CRASHED = "crashed"  # exited unexpectedly; a restart is scheduled
    RESTARTING = "restarting"  # waiting out the backoff before the next start
    FAILED = "failed"  # max_restarts consecutive starts failed; replace the worker
    STOPPED = "stopped"  # shut down on purpose


@dataclass(frozen=True)
class ExitInfo:
    """How a ComfyUI process ended."""

    generation: int
    returncode: int
    at: float

    def describe(self) -> str:
        return describe_returncode(self.returncode)


def describe_returncode(returncode: int) -> str:
    """``exited with code 1`` or ``killed by SIGKILL``, from a Popen return code."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exited with code {returncode}"


class LogTail:
    """The last ``size`` lines ComfyUI printed, kept for error diagnostics."""

    def __init__(self, size: int) -> None:
        self._lines: collections.deque[str] = collections.deque(maxlen=size)
        self._lock = threading.Lock()

    def append(self, line: str) -> None:
        with self._lock:
            self._lines.append(line)

    def last(self, n: int | None = None) -> list[str]:
        with self._lock:
            lines = list(self._lines)
        return lines if n is None else lines[-n:]


def probe(base_url: str, timeout: float = 1.0) -> bool:
    """True if ComfyUI answers ``GET /system_stats`` with 200 (all nodes loaded)."""
    # Imported here, not at the top: ComfyUI is spawned before these imports are paid for.
    import http.client
    import urllib.parse

    parts = urllib.parse.urlsplit(base_url)
    conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = conn_cls(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        conn.request("GET", parts.path.rstrip("/") + "/system_stats")
        response = conn.getresponse()
        response.read()
        return response.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


class Comfy(Protocol):
    """What the worker needs from ComfyUI's host, in either mode."""

    base_url: str
    state: ComfyState

    @property
    def generation(self) -> int: ...
    def start(self, early: subprocess.Popen[bytes] | None = None) -> None: ...
    def ensure_ready(self, timeout: float | None = None) -> None: ...
    def exit_since(self, generation: int) -> ExitInfo | None: ...
    def alive(self) -> bool: ...
    def kill_and_restart(self, reason: str) -> None: ...
    def log_tail(self, n: int | None = None) -> list[str]: ...
    def describe(self) -> dict[str, Any]: ...
    def shutdown(self, timeout: float = 10.0) -> None: ...


class ComfyProcess:
    """ComfyUI as a supervised child process (spawn mode)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base_url = settings.base_url
        self.state = ComfyState.NEW
        self.started_at: float | None = None  # time.time() of the last spawn
        self.ready_at: float | None = None  # time.time() readiness was noticed
        self.failures = 0  # consecutive failed starts
        self.restarts = 0  # restarts since the worker started
        self.last_exit: ExitInfo | None = None
        self.last_error: ComfyStartFailed | None = None
        self._tail = LogTail(settings.log_tail_lines)
        self._proc: subprocess.Popen[bytes] | None = None
        self._generation = 0
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._stopping = False

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def generation(self) -> int:
        """Increments on every spawn; jobs remember it to tell which process they ran on."""
        return self._generation

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, early: subprocess.Popen[bytes] | None = None) -> None:
        """Spawn ComfyUI and return at once; readiness is tracked in the background.

        ``early`` is a ComfyUI the entry point already spawned with this same command line
        (``launch.spawn_early``); it is adopted instead of starting a second one.
        """
        with self._cond:
            if self._stopping:
                return
            self._spawn_locked(early)

    def _spawn_locked(self, early: subprocess.Popen[bytes] | None = None) -> None:
        self._generation += 1
        generation = self._generation
        self.state = ComfyState.STARTING
        self.started_at = time.time()
        self.ready_at = None
        self._wake.clear()
        try:
            proc = early if early is not None else self.settings.launch.spawn()
        except OSError as exc:
            self._proc = None
            self._tail.append(f"could not start ComfyUI in {self.settings.comfyui_dir}: {exc}")
            self._on_exit_locked(generation, 127, during_start=True)
            return
        self._proc = proc
        log.info("ComfyUI starting (pid %s): %s", proc.pid, " ".join(map(str, proc.args)))  # type: ignore[arg-type]
        assert proc.stdout is not None and proc.stderr is not None
        for stream in (proc.stdout, proc.stderr):
            threading.Thread(target=self._pump, args=(stream,), name="comfyui-log", daemon=True).start()
        threading.Thread(
            target=self._watch, args=(proc, generation), name="comfyui-watch", daemon=True
        ).start()
        threading.Thread(
            target=self._poll_ready, args=(proc, generation), name="comfyui-ready", daemon=True
        ).start()

    def _pump(self, stream: IO[bytes]) -> None:
        """Echo ComfyUI's output line by line into the worker log and the tail."""
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            self._tail.append(line)
            comfy_log.info("[ComfyUI] %s", line)
            if any(hint in line for hint in _READY_HINTS):
                self._wake.set()
        stream.close()

    def _poll_ready(self, proc: subprocess.Popen[bytes], generation: int) -> None:
        deadline = time.monotonic() + self.settings.startup_timeout_s
        interval = self.settings.ready_poll_s
        while proc.poll() is None and not self._stopping:
            if probe(self.base_url, timeout=max(interval * 20, 0.5)):
                with self._cond:
                    if self._generation == generation and self.state == ComfyState.STARTING:
                        self.ready_at = time.time()
                        self.state = ComfyState.READY
                        self.failures = 0
                        self.last_error = None
                        self._cond.notify_all()
                        took = self.ready_at - (self.started_at or self.ready_at)
                        log.info("ComfyUI ready after %.2f s (pid %s)", took, proc.pid)
                return
            if time.monotonic() > deadline:
                log.error("ComfyUI not ready after %.0f s; killing it", self.settings.startup_timeout_s)
                self._tail.append(
                    f"comfy-runpod: not answering after COMFYUI_STARTUP_TIMEOUT="
                    f"{self.settings.startup_timeout_s:g}s"
                )
                self._kill(proc)
                return
            self._wake.wait(interval)
            self._wake.clear()

    def _watch(self, proc: subprocess.Popen[bytes], generation: int) -> None:
        returncode = proc.wait()
        with self._cond:
            if self._generation != generation or self._stopping:
                self.last_exit = ExitInfo(generation, returncode, time.time())
                self._cond.notify_all()
                return
            self._on_exit_locked(generation, returncode, during_start=self.state != ComfyState.READY)

    def _on_exit_locked(self, generation: int, returncode: int, *, during_start: bool) -> None:
        exit_info = ExitInfo(generation, returncode, time.time())
        self.last_exit = exit_info
        self.state = ComfyState.CRASHED
        if during_start:
            self.failures += 1
            tail = self._tail.last(40)
            self.last_error = ComfyStartFailed(
                f"ComfyUI {exit_info.describe()} while starting "
                f"(attempt {self.failures} of {self.settings.max_restarts})",
                refresh_worker=self.failures >= self.settings.max_restarts,
                diagnostics={"exit_code": returncode, "log_tail": tail},
            )
            log.error("%s; last log lines:\n%s", self.last_error.message, "\n".join(tail))
        else:
            log.error("ComfyUI %s (pid generation %d)", exit_info.describe(), generation)
        if self.failures >= self.settings.max_restarts:
            self.state = ComfyState.FAILED
            log.error("ComfyUI failed %d starts in a row; giving up", self.failures)
        else:
            self.state = ComfyState.RESTARTING
            delay = self.settings.restart_backoff_s * (2 ** max(self.failures - 1, 0))
            timer = threading.Timer(delay, self._restart)
            timer.daemon = True
            timer.start()
        self._cond.notify_all()

    def _restart(self) -> None:
        with self._cond:
            if self._stopping or self.state != ComfyState.RESTARTING:
                return
            self.restarts += 1
            log.warning("restarting ComfyUI (restart #%d)", self.restarts)
            self._spawn_locked()

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        """Signal ComfyUI and every process it started (it shares the worker's group)."""
        import psutil  # a runpod dependency; imported late to keep the worker's start fast

        try:
            tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        except psutil.Error:
            tree = []
        for process in tree:
            with contextlib.suppress(psutil.Error):
                process.send_signal(sig)
        if not tree:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(proc.pid, sig)

    def kill_and_restart(self, reason: str) -> None:
        """Kill a ComfyUI that is stuck (e.g. a node ignoring interrupts); it is restarted."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        log.warning("killing ComfyUI (pid %s): %s", proc.pid, reason)
        self._tail.append(f"comfy-runpod: killed ComfyUI: {reason}")
        self._kill(proc)
        proc.wait()
        with self._cond:  # wait for the watcher to record the exit and schedule the restart
            self._cond.wait_for(lambda: self.state != ComfyState.READY, timeout=5)

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop ComfyUI: SIGTERM, then SIGKILL after ``timeout``. No restart follows."""
        with self._cond:
            self._stopping = True
            self.state = ComfyState.STOPPED
            proc = self._proc
            self._cond.notify_all()
        if proc is None or proc.poll() is not None:
            return
        self._kill(proc, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill(proc)
            proc.wait()

    # -- queries --------------------------------------------------------------------------

    def ensure_ready(self, timeout: float | None = None) -> None:
        """Block until ComfyUI answers; raise ComfyStartFailed if a start fails.

        A start that fails while we wait is reported at once (with its exit code and log
        tail) rather than after the timeout; the restart it triggered keeps going, so the
        next job may find ComfyUI ready.
        """
        if timeout is None:
            # The readiness poller kills a start that overruns the startup timeout, and the
            # watcher reports that exit; the margin lets that report arrive first.
            timeout = self.settings.startup_timeout_s + 10.0
        deadline = time.monotonic() + timeout
        with self._cond:
            if self.state == ComfyState.NEW:
                self._spawn_locked()
            failures_before = self.failures
            while True:
                if self.state == ComfyState.READY:
                    return
                if self.state == ComfyState.STOPPED:
                    raise ComfyStartFailed("the worker is shutting down")
                if self.state == ComfyState.FAILED or self.failures > failures_before:
                    assert self.last_error is not None
                    raise self.last_error
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ComfyStartFailed(
                        f"ComfyUI was not ready within {timeout:g} s (state {self.state.value})",
                        diagnostics={"log_tail": self._tail.last(40)},
                    )
                self._cond.wait(remaining)

    def exit_since(self, generation: int) -> ExitInfo | None:
        """How the process of ``generation`` ended, or None while it runs."""
        with self._cond:
            if self._generation != generation:
                return self.last_exit or ExitInfo(generation, -1, time.time())
            proc = self._proc
        if proc is None:
            return self.last_exit
        returncode = proc.poll()
        if returncode is None:
            return None
        return ExitInfo(generation, returncode, time.time())

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, n: int | None = None) -> list[str]:
        return self._tail.last(n)

    def describe(self) -> dict[str, Any]:
        return {
            "mode": "spawn",
            "url": self.base_url,
            "state": self.state.value,
            "pid": self.pid,
            "restarts": self.restarts,
            "consecutive_start_failures": self.failures,
            "last_exit": self.last_exit.describe() if self.last_exit else None,
        }


class AttachedComfyUI:
    """A ComfyUI run by someone else (``COMFYUI_URL``): nothing is spawned or restarted."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base_url = settings.base_url
        self.state = ComfyState.NEW
        self.ready_at: float | None = None

    @property
    def generation(self) -> int:
        return 1

    def start(self, early: subprocess.Popen[bytes] | None = None) -> None:
        """Nothing to start; readiness is checked by ``ensure_ready``."""

    def ensure_ready(self, timeout: float | None = None) -> None:
        timeout = self.settings.startup_timeout_s if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while not probe(self.base_url, timeout=min(1.0, timeout)):
            if time.monotonic() > deadline:
                self.state = ComfyState.CRASHED
                raise ComfyStartFailed(
                    f"ComfyUI at COMFYUI_URL={self.base_url} does not answer GET /system_stats "
                    f"(waited {timeout:g} s); start it or fix COMFYUI_URL"
                )
            time.sleep(self.settings.ready_poll_s)
        if self.state != ComfyState.READY:
            self.ready_at = time.time()
        self.state = ComfyState.READY

    def exit_since(self, generation: int) -> ExitInfo | None:
        return None

    def alive(self) -> bool:
        return probe(self.base_url, timeout=2.0)

    def kill_and_restart(self, reason: str) -> None:
        log.warning("attached ComfyUI looks stuck (%s); restart it yourself", reason)

    def log_tail(self, n: int | None = None) -> list[str]:
        return []

    def describe(self) -> dict[str, Any]:
        return {"mode": "attach", "url": self.base_url, "state": self.state.value}

    def shutdown(self, timeout: float = 10.0) -> None:
        self.state = ComfyState.STOPPED


def make_comfy(settings: Settings) -> ComfyProcess | AttachedComfyUI:
    """The ComfyUI host for these settings: attached when ``COMFYUI_URL`` is set."""
    return AttachedComfyUI(settings) if settings.attach else ComfyProcess(settings)
