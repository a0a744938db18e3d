"""The Pulumi stack's outputs, for tasks that default to what ``pulumi up`` deployed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def stack_output(name: str) -> str | None:
    """One output of the current stack (``endpointId``, ``volumeId``, ...), or None.

    None when the Pulumi CLI is missing, no stack is selected, or the output does not exist:
    callers fall back to asking for the value.
    """
    if shutil.which("pulumi") is None:
        return None
    try:
        done = subprocess.run(
            ["pulumi", "stack", "output", name],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (done.stdout.strip() or None) if done.returncode == 0 else None
