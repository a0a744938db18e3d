"""The diff: which local files to upload, which to skip, which remote files to delete.

A file is skipped without reading it when the remote object has its size and the sync state
(what this machine uploaded to this bucket) records the same size and mtime, the quick check
rsync uses. When that cannot decide (same size, but the file was touched, or the object came
from elsewhere), the local sha256 (cached) is compared with the recorded one or with the
object's ``sha256`` metadata; without either, the file is uploaded again, the safe answer.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model_sync.layout import object_key, relpath_of
from model_sync.local import LocalFile
from model_sync.remote import RemoteObject


class SyncState:
    """What this machine uploaded, per object key: size, mtime_ns, sha256 ('' when not hashed).

    One JSON file per (endpoint, bucket), written after each run and on interruption, so a
    resumed run skips what the interrupted one finished. ``uploads`` holds the multipart
    uploads started but not completed (model_sync.multipart resumes them).
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        # small files are recorded from the upload threads while a large one is saved from the
        # sync's own thread: the JSON snapshot must not see the dict change under it
        self._lock = threading.RLock()
        self.records: dict[str, dict[str, Any]] = {}
        self.uploads: dict[str, dict[str, Any]] = {}
        if path is not None and path.is_file():
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                data = {}
            if isinstance(data, dict):
                self.records = data.get("objects", {}) if isinstance(data.get("objects"), dict) else {}
                self.uploads = data.get("uploads", {}) if isinstance(data.get("uploads"), dict) else {}

    def record(self, key: str, f: LocalFile) -> None:
        with self._lock:
            self.records[key] = {"size": f.size, "mtime_ns": f.mtime_ns, "sha256": f.sha256}

    def forget(self, key: str) -> None:
        with self._lock:
            self.records.pop(key, None)

    def save(self) -> None:
        if self.path is None:
            return
        with self._lock:
            text = json.dumps({"version": 1, "objects": self.records, "uploads": self.uploads})
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".tmp{os.getpid()}-{threading.get_ident()}")
            tmp.write_text(text)
            tmp.replace(self.path)


@dataclass
class Plan:
    upload: list[tuple[str, LocalFile, str]] = field(default_factory=list)  # key, file, why
    skip: list[tuple[str, LocalFile]] = field(default_factory=list)
    delete: list[RemoteObject] = field(default_factory=list)
    # with delete: remote objects whose local copy could not be read ("present, unknown"): kept
    unknown: list[RemoteObject] = field(default_factory=list)

    @property
    def upload_bytes(self) -> int:
        return sum(f.size for _, f, _ in self.upload)

    @property
    def delete_needs_confirmation(self) -> bool:
        """More than a few deletions, or any of a large file: ``--delete`` then wants ``--yes``."""
        return len(self.delete) > CONFIRM_DELETE_FILES or any(
            o.size > CONFIRM_DELETE_BYTES for o in self.delete
        )


#: ``--delete`` removes up to this many files, none over CONFIRM_DELETE_BYTES, without ``--yes``.
CONFIRM_DELETE_FILES = 3
CONFIRM_DELETE_BYTES = 1_000_000_000


def make_plan(
    files: list[LocalFile],
    remote: dict[str, RemoteObject],
    state: SyncState,
    prefix: str,
    *,
    hash_of: Callable[[LocalFile], str],
    remote_sha256: Callable[[str], str | None],
    delete: bool = False,
    delete_folders: tuple[str, ...] = (),
    unknown: Callable[[str], bool] = lambda relpath: False,
) -> Plan:
    """Compare the local files with the remote listing.

    ``hash_of`` returns a file's sha256 (through the cache), called only when the quick check
    cannot decide; ``remote_sha256`` reads an object's ``sha256`` metadata (a HeadObject),
    called only for objects this machine has no record of. With ``delete``, remote objects in
    ``delete_folders`` with no local file are listed for deletion, except those for which
    ``unknown(relpath)`` says the local copy could not be read (they go to ``plan.unknown``).
    """
    plan = Plan()
    local_keys: set[str] = set()
    for f in files:
        key = object_key(prefix, f.relpath)
        local_keys.add(key)
        obj = remote.get(key)
        if obj is None:
            plan.upload.append((key, f, "new"))
            continue
        if obj.size != f.size:
            plan.upload.append((key, f, "changed"))
            continue
        rec = state.records.get(key)
        if rec and rec.get("size") == f.size and rec.get("mtime_ns") == f.mtime_ns:
            plan.skip.append((key, f))
            continue
        digest = hash_of(f)
        known = rec.get("sha256") if rec and rec.get("size") == f.size else None
        if not known:
            known = remote_sha256(key)
        hashed = LocalFile(f.relpath, f.path, f.size, f.mtime_ns, digest)
        if known == digest:
            state.record(key, hashed)  # touched but identical: remember the new mtime
            plan.skip.append((key, hashed))
        else:
            plan.upload.append((key, hashed, "changed" if known else "unverified"))
    if delete:
        for key, obj in sorted(remote.items()):
            rel = relpath_of(prefix, key)
            if key in local_keys or rel is None:
                continue
            if rel.split("/", 1)[0] not in delete_folders:
                continue
            (plan.unknown if unknown(rel) else plan.delete).append(obj)
    return plan
