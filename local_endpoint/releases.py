"""The local endpoint's releases: one per start, so ``invoke releases`` shows what a restart changed.

Why: on RunPod a new image or env makes a release that rolls out as workers cycle; locally the code the
workers run changes when the user edits ``handler/`` and restarts the endpoint. Each start compares a
snapshot of what the workers run (a digest of the handler's sources as the ``image``, the worker command,
the worker count) with the previous start's and records a release (``version`` + 1, ``diff`` of the fields
that changed), in REST v2's ``Release`` shape. Env values are not part of the snapshot: they may be secrets.

Kept in a JSON file (``invoke local-endpoint`` uses the state dir of ``custom_node.local_key``) so versions
survive restarts; without a file (the library default, tests) the history lives as long as the endpoint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger("local_endpoint.releases")

MAX_RELEASES = 50


def handler_digest(root: Path) -> str:
    """``local/handler@sha256:<hex>``: a digest of ``handler/*.py`` (what a worker image would carry)."""
    digest = hashlib.sha256()
    for path in sorted((root / "handler").glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return f"local/handler@sha256:{digest.hexdigest()}"


def snapshot(root: Path, command: Sequence[str], workers: int) -> dict[str, Any]:
    return {"image": handler_digest(root), "workerCommand": " ".join(command), "workers.max": workers}


class ReleaseBook:
    """The releases, newest first; ``start`` records this run's."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.releases: list[dict[str, Any]] = []
        self._snapshot: dict[str, Any] = {}

    @property
    def version(self) -> int:
        return int(self.releases[0]["version"]) if self.releases else 0

    def start(self, current: dict[str, Any]) -> dict[str, Any]:
        """Record the release of this start (the first one, or one whose snapshot differs: both count)."""
        previous: dict[str, Any] = {}
        if self.path is not None:
            try:
                saved = json.loads(self.path.read_text(encoding="utf-8"))
                self.releases = [r for r in saved.get("releases", []) if isinstance(r, dict)]
                previous = dict(saved.get("snapshot") or {})
            except (OSError, ValueError, AttributeError):
                self.releases, previous = [], {}
        diff = [
            {"field": key, "old": previous.get(key), "new": current.get(key)}
            for key in sorted(set(previous) | set(current))
            if previous.get(key) != current.get(key)
        ]
        release = {
            "id": f"rel_{uuid.uuid4().hex[:12]}",
            "version": self.version + 1,
            "source": "MANUAL",
            "buildId": None,
            "createdByUserId": None,
            "workerCount": 0,
            "createdAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "diff": diff if previous else [],
        }
        self.releases = [release, *self.releases][:MAX_RELEASES]
        self._snapshot = current
        self._save()
        return release

    def _save(self) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.path.write_text(
                json.dumps({"snapshot": self._snapshot, "releases": self.releases}, indent=1),
                encoding="utf-8",
            )
        except OSError as exc:  # the endpoint works without its history
            log.warning("could not keep the release history in %s: %s", self.path, exc)
