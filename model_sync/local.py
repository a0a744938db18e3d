"""The local side: scan a models tree and hash its files, with a cache so unchanged files are not re-read.

Re-hashing hundreds of GB on every sync would cost minutes; a file whose size and mtime (ns)
are unchanged keeps its cached sha256. The cache is one JSON file keyed by absolute path,
written atomically so an interrupted run never leaves a corrupt cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HASH_CHUNK = 4 * 1024 * 1024


def default_cache_dir() -> Path:
    """``$COMFY_RUNPOD_CACHE`` or ``$XDG_CACHE_HOME/comfy-runpod`` (``~/.cache/comfy-runpod``)."""
    if os.environ.get("COMFY_RUNPOD_CACHE"):
        return Path(os.environ["COMFY_RUNPOD_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "comfy-runpod"


@dataclass(frozen=True)
class LocalFile:
    """One model file: ``relpath`` is ``<folder>/<file>`` with '/' separators."""

    relpath: str
    path: Path
    size: int
    mtime_ns: int
    sha256: str = ""


@dataclass(frozen=True)
class Unreadable:
    """A path under a model folder that could not be read: ``relpath`` (a file or a folder) and why.

    A dangling symlink into an unmounted drive, a folder without read permission: what is
    there cannot be known, so nothing under it may be treated as gone (``--delete``).
    """

    relpath: str
    error: str


@dataclass
class Scan:
    """The files of a scan, and what could not be read (reported, and never deleted remotely)."""

    files: list[LocalFile] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)

    def covers(self, relpath: str) -> bool:
        """Whether ``relpath`` is, or lies under, something that could not be read."""
        return any(relpath == u.relpath or relpath.startswith(u.relpath + "/") for u in self.unreadable)


def scan_tree(root: Path, folders: Iterable[str]) -> Scan:
    """The files under ``root/<folder>/`` for each folder, hidden files and folders left out.

    Symlinks to files and folders are followed (people link models from elsewhere); files are
    sorted. A folder that is a dangling link, a file that cannot be stat'ed or opened, a
    folder that cannot be listed: each is recorded in ``unreadable``, never silently skipped.
    """
    result = Scan()

    def unreadable(path: Path, exc: OSError) -> None:
        rel = path.relative_to(root).as_posix()
        result.unreadable.append(Unreadable(rel, f"{type(exc).__name__}: {exc.strerror or exc}"))

    for folder in folders:
        base = root / folder
        if not base.is_dir():
            if base.is_symlink() or base.exists():  # a dangling link, or a file where a folder goes
                try:
                    base.stat()
                    raise NotADirectoryError(20, "not a folder")
                except OSError as exc:
                    unreadable(base, exc)
            continue
        for dirpath, dirnames, filenames in os.walk(
            base, followlinks=True, onerror=lambda exc: unreadable(Path(exc.filename), exc)
        ):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            rel_dir = Path(dirpath).relative_to(root).as_posix()
            for name in filenames:
                if name.startswith("."):
                    continue
                path = Path(dirpath) / name
                try:
                    st = path.stat()
                    if not os.access(path, os.R_OK):
                        raise PermissionError(13, "no read permission")
                except OSError as exc:
                    unreadable(path, exc)
                    continue
                result.files.append(LocalFile(f"{rel_dir}/{name}", path, st.st_size, st.st_mtime_ns))
    result.files.sort(key=lambda f: f.relpath)
    result.unreadable.sort(key=lambda u: u.relpath)
    return result


def scan(root: Path, folders: Iterable[str]) -> list[LocalFile]:
    """The readable files of :func:`scan_tree` (for callers that only send files)."""
    return scan_tree(root, folders).files


def sha256_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    """The hex sha256 of a file, read in 4 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            digest.update(chunk)
            if on_bytes:
                on_bytes(len(chunk))
    return digest.hexdigest()


class HashCache:
    """sha256 by absolute path, valid while size and mtime_ns are unchanged."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._entries: dict[str, list[Any]] = {}
        self._dirty = False
        if path is not None and path.is_file():
            try:
                data = json.loads(path.read_text())
                if isinstance(data, dict) and data.get("version") == 1:
                    self._entries = data.get("files", {})
            except (OSError, ValueError):
                self._entries = {}  # a damaged cache only costs a re-hash

    def get(self, f: LocalFile) -> str | None:
        entry = self._entries.get(str(f.path))
        if entry and entry[0] == f.size and entry[1] == f.mtime_ns:
            return str(entry[2])
        return None

    def put(self, f: LocalFile, sha256: str) -> None:
        self._entries[str(f.path)] = [f.size, f.mtime_ns, sha256]
        self._dirty = True

    def save(self) -> None:
        if self.path is None or not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"version": 1, "files": self._entries}))
        tmp.replace(self.path)
        self._dirty = False


def with_hashes(
    files: list[LocalFile], cache: HashCache, on_bytes: Callable[[int], None] | None = None
) -> list[LocalFile]:
    """The files with their sha256 filled in: from the cache, else read (and cached)."""
    out: list[LocalFile] = []
    for f in files:
        digest = cache.get(f)
        if digest is None:
            digest = sha256_file(f.path, on_bytes)
            cache.put(f, digest)
        out.append(LocalFile(f.relpath, f.path, f.size, f.mtime_ns, digest))
    cache.save()
    return out
