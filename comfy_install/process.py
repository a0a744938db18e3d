"""Running git, uv and docker: one place that spawns, captures and turns failures into errors.

Commands that change something are echoed (``$ git fetch ...``) through the ``echo`` callback
the task passes in, so the user sees exactly what ran; probes (``git rev-parse``) stay quiet.
Git never prompts: ``GIT_TERMINAL_PROMPT=0`` makes an unreachable private URL fail at once
instead of waiting for a password nobody will type.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from comfy_install.errors import CommandError

Echo = Callable[[str], None]
"""Receives each state-changing command line before it runs (``print`` in the tasks)."""


def quiet(_line: str) -> None:
    """An ``Echo`` that prints nothing (tests, probes)."""


@dataclass(frozen=True)
class Completed:
    """A finished command: its argv, exit code and captured output."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def command_line(argv: Sequence[str], cwd: Path | None = None) -> str:
    """The shell-quoted form of ``argv`` users can copy (``(cd DIR && ...)`` when a cwd is set)."""
    line = shlex.join(argv)
    return f"(cd {shlex.quote(str(cwd))} && {line})" if cwd is not None else line


def run(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    check: bool = True,
    echo: Echo | None = None,
    env: Mapping[str, str] | None = None,
    stream: bool = False,
    hint: str = "",
    error: type[CommandError] = CommandError,
    timeout: float | None = None,
) -> Completed:
    """Run ``argv``; with ``check`` a non-zero exit raises ``error`` carrying the last output line.

    ``stream`` lets the output through to the terminal (long installs show their progress);
    otherwise it is captured. A missing executable exits 127 and one past ``timeout`` 124, as
    in a shell; with ``check`` both raise like any failure.
    """
    if echo is not None:
        echo(f"$ {command_line(argv, cwd)}")
    full_env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", **(env or {})}
    try:
        done = subprocess.run(
            list(argv),
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            capture_output=not stream,
            text=True,
            check=False,
            timeout=timeout,
        )
        result = Completed(tuple(argv), done.returncode, done.stdout or "", done.stderr or "")
    except FileNotFoundError:
        result = Completed(tuple(argv), 127, "", f"{argv[0]} is not installed or not on PATH")
    except subprocess.TimeoutExpired:
        result = Completed(tuple(argv), 124, "", f"no answer within {timeout} s")
    if check and not result.ok:
        raise error(argv, result.returncode, result.stderr + result.stdout, hint)
    return result
