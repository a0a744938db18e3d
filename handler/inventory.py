"""The model inventory: which model files this worker's ComfyUI can see, and their sizes.

Logged once at start (folder -> files, sizes) and summarised on every job and in error
diagnostics, so "model not found" can be told apart from "volume not mounted" at a glance.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("comfy_runpod.inventory")

# ComfyUI's folders that do not hold models.
_NOT_MODELS = {"custom_nodes"}


@dataclass
class Inventory:
    paths: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, dict[str, int]] = field(default_factory=dict)  # folder -> name -> bytes

    def names(self) -> dict[str, list[str]]:
        return {folder: sorted(files) for folder, files in self.files.items()}

    def summary(self) -> dict[str, Any]:
        """``{folder: {"files": n, "bytes": total}}`` for non-empty folders."""
        return {
            folder: {"files": len(files), "bytes": sum(files.values())}
            for folder, files in sorted(self.files.items())
            if files
        }

    def summary_line(self) -> str:
        parts = [f"{folder}={info['files']}" for folder, info in self.summary().items()]
        return ", ".join(parts) if parts else "no model files found"


def _scan_folder(root: Path) -> dict[str, int]:
    found: dict[str, int] = {}
    if not root.is_dir():
        return found
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_dir = Path(dirpath).relative_to(root)
        for name in filenames:
            # Hidden files, and ComfyUI's extensionless "put_..._here" placeholders.
            if name.startswith(".") or "." not in name:
                continue
            path = Path(dirpath) / name
            try:
                size = path.stat().st_size
            except OSError:
                continue
            rel = (rel_dir / name).as_posix()
            found.setdefault(rel, size)
    return found


def scan(folder_paths: dict[str, Any]) -> Inventory:
    """Scan the folders ComfyUI reports (``GET /internal/folder_paths``)."""
    inventory = Inventory()
    for folder, raw_paths in folder_paths.items():
        if folder in _NOT_MODELS:
            continue
        paths = [str(p) for p in raw_paths] if isinstance(raw_paths, list) else []
        # Real ComfyUI answers [[paths...], [extensions...]] for some versions.
        if paths and isinstance(raw_paths[0], list):
            paths = [str(p) for p in raw_paths[0]]
        inventory.paths[folder] = paths
        files: dict[str, int] = {}
        for path in paths:
            for name, size in _scan_folder(Path(path)).items():
                files.setdefault(name, size)
        inventory.files[folder] = files
    return inventory


def log_inventory(inventory: Inventory) -> None:
    if not any(inventory.files.values()):
        log.warning(
            "model inventory: no model files found in %d folders (is the network volume "
            "mounted at /runpod-volume, with models under comfyui/models/?)",
            len(inventory.paths),
        )
        return
    for folder, files in sorted(inventory.files.items()):
        if not files:
            continue
        listing = ", ".join(f"{name} ({size / 1e6:.1f} MB)" for name, size in sorted(files.items()))
        log.info("model inventory: %s (%s): %s", folder, ", ".join(inventory.paths[folder]), listing)
