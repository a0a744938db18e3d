"""The errors of comfy_install, grouped by who fixes them.

::

    InstallError              base: its message is one line a task prints as is
    ├── LockError             the lock file is wrong; names the field and the fix (the user edits it)
    ├── MirrorError           a --mirror / COMFY_RUNPOD_MIRRORS entry is malformed (the user)
    ├── CommandError          git, uv or docker failed: the command, its exit code, its last line
    │   └── FetchError        a locked commit could not be fetched (network, URL, mirror)
    └── WorkTreeError         a folder is not in the state the install needs (local changes, a file
                              where a link goes); nothing is overwritten without --force

Tasks catch ``InstallError`` once and turn it into ``invoke.exceptions.Exit``.
"""

from __future__ import annotations

from collections.abc import Sequence


class InstallError(Exception):
    """Something the user can fix; ``str()`` is the one-line message to print."""


class LockError(InstallError):
    """The lock file is invalid. The message names the file, the field and what to write."""

    def __init__(self, source: str, field: str, problem: str) -> None:
        self.source = source
        self.field = field
        self.problem = problem
        super().__init__(f"{source}: {field}: {problem}")


class MirrorError(InstallError):
    """A mirror specification is not ``URL=PATH`` or ``URL=URL``."""


class CommandError(InstallError):
    """An external command failed; keeps the argv and the output for diagnostics."""

    def __init__(self, argv: Sequence[str], returncode: int, output: str, hint: str = "") -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.output = output
        last = next((line.strip() for line in reversed(output.splitlines()) if line.strip()), "")
        message = f"`{' '.join(self.argv)}` failed (exit {returncode})"
        if last:
            message += f": {last}"
        if hint:
            message += f"; {hint}"
        super().__init__(message)


class FetchError(CommandError):
    """A repository or commit could not be fetched: offline, a wrong URL or a missing mirror."""


class WorkTreeError(InstallError):
    """A folder of the install is not what setup expects (e.g. a checkout with local changes)."""
