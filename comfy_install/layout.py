"""Where a local install keeps things, and the two links that tie it to the repository.

A local install is a ComfyUI checkout (default ``comfyui/``, git-ignored) with:

- ``custom_nodes/<pack>``: each locked pack, a checkout at its commit;
- ``custom_nodes/comfy-runpod``: the "active copy" of the project's ``custom_node/``, a
  symbolic link (edits show up at ComfyUI's next start) or, with ``--copy``, a copy marked
  with ``.comfy-runpod-copy`` (for filesystems without links);
- ``user/default/workflows``: a link to the repository's ``workflows/``, so what the UI saves is
  versioned with the project;
- ``user/comfy-runpod/``: the install's own state (``install.json``, the launch's
  ``extra_model_paths.yaml``); ComfyUI's ``.gitignore`` already ignores ``user/``.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comfy_install.errors import WorkTreeError
from comfy_install.lock import ACTIVE_NODE_NAME

COPY_MARKER = ".comfy-runpod-copy"
_COPY_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "node_modules", ".pytest_cache")


@dataclass(frozen=True)
class Layout:
    """The paths of a local install rooted at ``comfyui`` (the ComfyUI checkout)."""

    comfyui: Path

    @property
    def custom_nodes(self) -> Path:
        return self.comfyui / "custom_nodes"

    def node_dir(self, name: str) -> Path:
        return self.custom_nodes / name

    @property
    def active_node(self) -> Path:
        return self.custom_nodes / ACTIVE_NODE_NAME

    @property
    def workflows_link(self) -> Path:
        return self.comfyui / "user" / "default" / "workflows"

    @property
    def state_dir(self) -> Path:
        return self.comfyui / "user" / "comfy-runpod"

    @property
    def manifest(self) -> Path:
        return self.state_dir / "install.json"

    @property
    def launch_model_paths(self) -> Path:
        return self.state_dir / "extra_model_paths.yaml"


def venv_python(venv: Path) -> Path:
    """The interpreter of a virtual environment (``bin/python``, ``Scripts\\python.exe`` on Windows)."""
    windows = venv / "Scripts" / "python.exe"
    return windows if os.name == "nt" else venv / "bin" / "python"


def _link(target: Path, link: Path) -> None:
    """A relative symbolic link: the install keeps working when the repository folder moves."""
    relative = os.path.relpath(target.resolve(), link.parent.resolve())
    try:
        link.symlink_to(relative, target_is_directory=True)
    except OSError as exc:
        raise WorkTreeError(
            f"cannot create the link {link} -> {target} ({exc.strerror}); on Windows enable Developer "
            "Mode, or use --copy"
        ) from None


def _points_to(link: Path, target: Path) -> bool:
    return link.is_symlink() and link.resolve() == target.resolve()


def install_active_node(source: Path, dest: Path, *, copy: bool) -> str:
    """Install the project's ``custom_node/`` at ``dest`` as a link or a copy; returns what it did.

    Only a link or a copy this function made (it carries ``COPY_MARKER``) is ever replaced; any
    other folder there is someone's work and is refused.
    """
    if not (source / "__init__.py").is_file():
        raise WorkTreeError(f"{source} is not a ComfyUI extension (no __init__.py)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not copy and _points_to(dest, source):
        return "unchanged"
    if dest.is_symlink():
        dest.unlink()
    elif dest.exists():
        if not (dest / COPY_MARKER).exists():
            raise WorkTreeError(
                f"{dest} exists and was not installed by comfy-runpod; move it away and re-run"
            )
        if copy and not active_copy_differences(source, dest):
            return "unchanged"
        shutil.rmtree(dest)
    if copy:
        shutil.copytree(source, dest, ignore=_COPY_IGNORE)
        (dest / COPY_MARKER).write_text(
            f"A copy of {source.resolve()}, made by `invoke setup --copy`; re-run it after editing.\n",
            encoding="utf-8",
        )
        return "copied"
    _link(source, dest)
    return "linked"


def active_copy_differences(source: Path, dest: Path) -> list[str]:
    """Files that differ between the project's ``custom_node/`` and a copy of it (relative paths)."""
    differences: list[str] = []

    def walk(compare: filecmp.dircmp[str], prefix: str) -> None:
        for name in compare.left_only + compare.right_only + compare.diff_files + compare.funny_files:
            if name in (COPY_MARKER, "__pycache__") or name.endswith(".pyc"):
                continue
            differences.append(prefix + name)
        for name, sub in compare.subdirs.items():
            if name not in ("__pycache__", "node_modules"):
                walk(sub, f"{prefix}{name}/")

    walk(filecmp.dircmp(source, dest, ignore=[]), "")
    # dircmp compares size and mtime only ("shallow"); confirm the suspects by content.
    return sorted(d for d in differences if not _same_file(source / d, dest / d))


def _same_file(left: Path, right: Path) -> bool:
    return left.is_file() and right.is_file() and filecmp.cmp(left, right, shallow=False)


def link_workflows(workflows: Path, link: Path) -> str:
    """Make ComfyUI's ``user/default/workflows`` a link to the repository's ``workflows/``.

    A folder already there with files in it holds workflows saved before the link existed; they
    are not deleted: the user moves them into ``workflows/`` first.
    """
    workflows.mkdir(parents=True, exist_ok=True)
    link.parent.mkdir(parents=True, exist_ok=True)
    if _points_to(link, workflows):
        return "unchanged"
    if link.is_symlink():
        link.unlink()
    elif link.is_dir():
        if any(link.iterdir()):
            raise WorkTreeError(
                f"{link} has workflows of its own; move them into {workflows}, then re-run (none deleted)"
            )
        link.rmdir()
    elif link.exists():
        raise WorkTreeError(f"{link} is a file; move it away and re-run")
    _link(workflows, link)
    return "linked"


def read_manifest(path: Path) -> dict[str, Any]:
    """The install's record of what it installed (empty when there is none or it is unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_manifest(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def stale_nodes(previous: Iterable[str], locked: Iterable[str]) -> list[str]:
    """Packs a previous ``setup`` installed that the lock no longer names (to be removed)."""
    keep = set(locked)
    return sorted(name for name in set(previous) if name not in keep and name != ACTIVE_NODE_NAME)


def unmanaged_nodes(custom_nodes: Path, managed: Iterable[str], tracked: Iterable[str]) -> list[str]:
    """Entries of ``custom_nodes/`` that neither the lock nor ComfyUI's own tree account for.

    They load locally but are not in the image: a workflow using them runs here and fails there.
    ``tracked`` are the names ComfyUI itself ships there (``websocket_image_save.py``, ...).
    """
    if not custom_nodes.is_dir():
        return []
    known = {*managed, *tracked, ACTIVE_NODE_NAME, "__pycache__"}
    found = []
    for entry in custom_nodes.iterdir():
        name = entry.name
        if name in known or name.endswith((".disabled", ".example")) or name.startswith("."):
            continue
        if entry.is_file() and entry.suffix != ".py":
            continue  # ComfyUI loads only folders and .py files
        found.append(name)
    return sorted(found)
