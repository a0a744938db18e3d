"""Every line each worker printed, kept per worker so the REST v2 log stream can serve and resume it.

Why: ``invoke logs --follow`` and the custom node's "worker log" read a worker's log through RunPod's REST
v2 ``getWorkerLogs`` (Server-Sent Events); the local endpoint answers the same call from here. Each event
is ``{ts, source, line}`` with ``ts`` an RFC 3339 time that is also the SSE event id: strictly increasing
(two lines in the same microsecond get consecutive microseconds), so ``Last-Event-ID`` resumes exactly
after the last line a client saw. ``container`` lines are what the worker printed (the handler's and, in
spawn mode, ComfyUI's); ``system`` lines are the endpoint's own about that worker (started, exited).

Bounded: ``max_lines`` per worker, and the logs of the ``max_workers`` most recent workers (a worker that
exited stays readable for a while: what it printed before it died is what a user wants to see).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

MAX_LINES = 5000
MAX_WORKERS = 20


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class WorkerLog:
    events: deque[dict[str, str]]
    ended: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class WorkerLogBook:
    """Lines by worker id; call from the endpoint's event loop."""

    def __init__(self, max_lines: int = MAX_LINES, max_workers: int = MAX_WORKERS) -> None:
        self.max_lines = max_lines
        self.max_workers = max_workers
        self._logs: OrderedDict[str, WorkerLog] = OrderedDict()
        self._last = datetime.fromtimestamp(0, UTC)

    def add(self, worker_id: str, line: str, source: str = "container") -> str:
        """Append a line; returns its ``ts`` (the event id)."""
        log = self._logs.get(worker_id)
        if log is None:
            log = self._logs[worker_id] = WorkerLog(deque(maxlen=self.max_lines))
            while len(self._logs) > self.max_workers:
                self._logs.popitem(last=False)
        now = datetime.now(UTC)
        self._last = now if now > self._last else self._last + timedelta(microseconds=1)
        ts = _iso(self._last)
        log.events.append({"ts": ts, "source": source, "line": line})
        log.changed.set()
        return ts

    def end(self, worker_id: str, line: str) -> None:
        """The worker exited: a last ``system`` line; streams of it end once they sent it."""
        self.add(worker_id, line, source="system")
        self._logs[worker_id].ended = True
        self._logs[worker_id].changed.set()

    def get(self, worker_id: str) -> WorkerLog | None:
        return self._logs.get(worker_id)

    @staticmethod
    def select(
        log: WorkerLog,
        *,
        after: str | None = None,
        since: str | None = None,
        tail: int = 100,
        source: str | None = None,
    ) -> list[dict[str, str]]:
        """The backfill, with RunPod's precedence: ``after`` (Last-Event-ID), else ``since``, else ``tail``.
        Times are compared as times (``...:00Z`` and ``...:00.5Z`` do not sort as strings); ``ValueError``
        for one that is not RFC 3339."""
        events = [e for e in log.events if source in (None, e["source"])]
        if after is not None:
            cursor = parse_time(after)
            return [e for e in events if parse_time(e["ts"]) > cursor]
        if since is not None:
            start = parse_time(since)
            return [e for e in events if parse_time(e["ts"]) >= start]
        return events[-tail:] if tail else []


def parse_time(value: str) -> datetime:
    """An RFC 3339 time (``Z`` or an offset) as an aware UTC datetime; ``ValueError`` otherwise."""
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone")
    return parsed.astimezone(UTC)
