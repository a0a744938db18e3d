"""Removing job files: the job's own folders right after it, and a periodic sweep.

The sweep removes anything under the jobs folders (and ComfyUI's temp dir) older than
``CLEANUP_AGE``, catching what a killed job left behind.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from handler.input_files import JOBS_SUBFOLDER, remove_tree

log = logging.getLogger("comfy_runpod.cleanup")


def sweep(roots: list[Path | None], max_age_s: float, now: float | None = None) -> int:
    """Remove entries older than ``max_age_s`` directly under each root; returns the count."""
    now = time.time() if now is None else now
    removed = 0
    for root in roots:
        if root is None or not root.is_dir():
            continue
        for entry in root.iterdir():
            try:
                age = now - entry.lstat().st_mtime
            except OSError:
                continue
            if age > max_age_s:
                remove_tree(entry)
                removed += 1
    if removed:
        log.info("cleanup: removed %d entries older than %.0f s", removed, max_age_s)
    return removed


def sweep_roots(input_dir: Path | None, output_dir: Path | None, temp_dir: Path | None) -> list[Path | None]:
    return [
        input_dir / JOBS_SUBFOLDER if input_dir else None,
        output_dir / JOBS_SUBFOLDER if output_dir else None,
        temp_dir,
    ]
