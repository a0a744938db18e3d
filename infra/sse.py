"""Server-Sent Events as RunPod's worker-log stream sends them: ``id:`` + JSON ``data:`` per event.

Why its own module: the parsing rules (an event ends at a blank line; ``data:`` lines join with newlines;
``:`` starts a comment, e.g. a keep-alive) decide whether a dropped connection can lose or repeat a line, so
they are written once and tested alone. An event still open when the input ends is dropped: the connection
broke in the middle of it, and a resume from the last complete event's id fetches it again, whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class LogEvent:
    """One log line: ``id`` (the resume cursor), ``ts``, ``source`` (container | system), ``line``."""

    id: str | None
    ts: str
    source: str
    line: str


def parse_sse(lines: Iterable[str]) -> Iterator[LogEvent]:
    """The complete events of an SSE text stream (given line by line, without line ends)."""
    event_id: str | None = None
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r")
        if line == "":
            if data:
                yield _event(event_id, "\n".join(data))
            event_id, data = None, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "id":
            event_id = value or None
        elif name == "data":
            data.append(value)


def _event(event_id: str | None, data: str) -> LogEvent:
    try:
        payload = json.loads(data)
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        return LogEvent(event_id, "", "container", data)
    return LogEvent(
        event_id,
        str(payload.get("ts") or ""),
        str(payload.get("source") or "container"),
        str(payload.get("line") if payload.get("line") is not None else ""),
    )
