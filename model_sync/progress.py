"""Progress reporting: bytes, rate, ETA and files, on a rich bar (stderr) or nowhere (tests).

Transfers report from many threads; rich's Progress is thread-safe, and the null reporter
does nothing, so the sync code never knows which one it has.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from rich.progress import TaskID


class Reporter(Protocol):
    def start(self, label: str, total_bytes: int, total_files: int) -> None: ...
    def advance(self, nbytes: int) -> None: ...
    def file_done(self) -> None: ...
    def finish(self) -> None: ...


class NullReporter:
    """Counts, shows nothing: for tests and ``--quiet``."""

    def __init__(self) -> None:
        self.bytes = 0
        self.files = 0
        self._lock = threading.Lock()

    def start(self, label: str, total_bytes: int, total_files: int) -> None:
        self.bytes = self.files = 0

    def advance(self, nbytes: int) -> None:
        with self._lock:
            self.bytes += nbytes

    def file_done(self) -> None:
        with self._lock:
            self.files += 1

    def finish(self) -> None:
        pass


class RichReporter:
    """One rich bar: ``label  [bar]  3.2/10.0 GB  120 MB/s  0:01:02  files 12/40``."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            TextColumn("files {task.fields[files]}/{task.fields[total_files]}"),
            console=Console(stderr=True),
        )
        self._task: TaskID | None = None
        self._files = 0
        self._lock = threading.Lock()

    def __enter__(self) -> RichReporter:
        self._progress.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    def start(self, label: str, total_bytes: int, total_files: int) -> None:
        self._files = 0
        self._task = self._progress.add_task(label, total=total_bytes, files=0, total_files=total_files)

    def advance(self, nbytes: int) -> None:
        if self._task is not None:
            self._progress.advance(self._task, nbytes)

    def file_done(self) -> None:
        with self._lock:
            self._files += 1
            files = self._files
        if self._task is not None:
            self._progress.update(self._task, files=files)

    def finish(self) -> None:
        if self._task is not None:
            task = self._progress.tasks[-1]
            self._progress.update(self._task, completed=task.total)
