"""Start the stand-in as a real process (a fake ComfyUI checkout's ``main.py``) and watch it.

For tests and benchmarks that need what only a process has: exit codes, signals, boot
delays, a log on stderr. A supervisor under test normally launches ``main.py`` itself; this
helper is for checking the stand-in, or for driving it without a supervisor::

    with StandinProcess.spawn(tmp_path / "ComfyUI", ["--cpu"]) as comfy:
        comfy.wait_listening()
        urllib.request.urlopen(comfy.url + "/system_stats")
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

from .runner import make_fake_comfyui_dir

_LISTENING = re.compile(r"^standin: listening at (\d+(?:\.\d+)?)$")
_GUI = re.compile(r"To see the GUI go to: https?://(.+):(\d+)$")


class StandinProcess:
    """A running ``python main.py ...`` of a fake ComfyUI checkout, with its output collected.

    ``stdout_lines``/``stderr_lines`` fill in from reader threads (so neither pipe can block
    the process). Use :meth:`wait_listening` for readiness, :meth:`wait` for the exit status.
    """

    def __init__(self, popen: subprocess.Popen[str]) -> None:
        self.popen = popen
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._pump, args=(popen.stdout, self.stdout_lines), daemon=True),
            threading.Thread(target=self._pump, args=(popen.stderr, self.stderr_lines), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @classmethod
    def spawn(
        cls, comfy_dir: Path, args: Sequence[str] = (), *, port: int = 0, env: Mapping[str, str] | None = None
    ) -> StandinProcess:
        """Write a fake checkout at ``comfy_dir`` and start ``main.py`` there.

        ``--listen 127.0.0.1 --port <port>`` come first (``port=0`` picks a free port, read
        back from the "To see the GUI" line); ``env`` is added to the current environment.
        """
        make_fake_comfyui_dir(comfy_dir)
        command = [sys.executable, "main.py", "--listen", "127.0.0.1", "--port", str(port), *args]
        popen = subprocess.Popen(
            command,
            cwd=comfy_dir,
            env={**os.environ, **(env or {})},
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        return cls(popen)

    def _pump(self, stream: IO[str] | None, lines: list[str]) -> None:
        if stream is None:
            return
        for line in iter(stream.readline, ""):
            with self._changed:
                lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def log_lines(self) -> list[str]:
        """Everything printed so far, stdout then stderr."""
        return [*self.stdout_lines, *self.stderr_lines]

    def wait_listening(self, timeout: float = 20) -> float:
        """Wait for the ``standin: listening at T`` line; return T (``time.time()`` based).

        Raises ``RuntimeError`` with the log if the process exits first, ``TimeoutError`` if
        nothing happens in time.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.stdout_lines:
                    match = _LISTENING.match(line)
                    if match:
                        return float(match.group(1))
                if self.popen.poll() is not None and not any(r.is_alive() for r in self._readers):
                    raise RuntimeError(
                        f"stand-in exited with {self.popen.returncode} before listening:\n"
                        + "\n".join(self.log_lines[-30:])
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("stand-in did not listen in time:\n" + "\n".join(self.log_lines[-30:]))
                self._changed.wait(min(remaining, 0.1))

    @property
    def port(self) -> int:
        """The port from the "To see the GUI go to" line (waits briefly for it)."""
        deadline = time.monotonic() + 5
        with self._changed:
            while time.monotonic() < deadline:
                for line in self.log_lines:
                    match = _GUI.search(line)
                    if match:
                        return int(match.group(2))
                self._changed.wait(0.05)
        raise RuntimeError("no 'To see the GUI go to' line in the stand-in's log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait(self, timeout: float = 20) -> int:
        """Wait for the process to exit and its output to be read; return the exit status."""
        code = self.popen.wait(timeout)
        self._close(timeout)
        return code

    def stop(self, timeout: float = 10) -> None:
        """Terminate (SIGTERM, like a supervisor would), then kill if it lingers."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)
        self._close(timeout)

    def _close(self, timeout: float) -> None:
        for reader in self._readers:
            reader.join(timeout)
        for stream in (self.popen.stdout, self.popen.stderr):
            if stream is not None and not stream.closed:
                stream.close()

    def __enter__(self) -> StandinProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
