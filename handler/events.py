"""ComfyUI websocket events as typed values.

The client parses each text frame once, here; the execution loop matches on these types
instead of poking at dicts. Events of other prompts are dropped by ``parse_event``'s caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Status:
    queue_remaining: int


@dataclass(frozen=True)
class ExecutionStart:
    prompt_id: str
    timestamp: int | None


@dataclass(frozen=True)
class ExecutionCached:
    prompt_id: str
    nodes: list[str]


@dataclass(frozen=True)
class Executing:
    prompt_id: str
    node: str | None  # None: the prompt has finished


@dataclass(frozen=True)
class Progress:
    prompt_id: str
    node: str | None
    value: int
    max: int


@dataclass(frozen=True)
class Executed:
    prompt_id: str
    node: str
    output: dict[str, Any]


@dataclass(frozen=True)
class ExecutionSuccess:
    prompt_id: str
    timestamp: int | None


@dataclass(frozen=True)
class ExecutionError:
    prompt_id: str
    node_id: str | None
    node_type: str | None
    exception_type: str
    exception_message: str
    traceback: list[str] = field(default_factory=list)
    timestamp: int | None = None


@dataclass(frozen=True)
class ExecutionInterrupted:
    prompt_id: str
    node_id: str | None
    node_type: str | None


Event = (
    Status
    | ExecutionStart
    | ExecutionCached
    | Executing
    | Progress
    | Executed
    | ExecutionSuccess
    | ExecutionError
    | ExecutionInterrupted
)

FINAL_EVENTS = (ExecutionSuccess, ExecutionError, ExecutionInterrupted)


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) else None


def parse_event(message: dict[str, Any]) -> Event | None:
    """Turn one text frame (``{"type", "data"}``) into an event; None for ones we ignore."""
    kind = message.get("type")
    data = message.get("data")
    if not isinstance(data, dict):
        return None
    pid = str(data.get("prompt_id", ""))
    if kind == "status":
        info = data.get("status", {}).get("exec_info", {})
        return Status(int(info.get("queue_remaining", 0)))
    if kind == "execution_start":
        return ExecutionStart(pid, _int_or_none(data.get("timestamp")))
    if kind == "execution_cached":
        return ExecutionCached(pid, [str(n) for n in data.get("nodes") or []])
    if kind == "executing":
        return Executing(pid, _str_or_none(data.get("node")))
    if kind == "progress":
        return Progress(
            pid, _str_or_none(data.get("node")), int(data.get("value", 0)), int(data.get("max", 0))
        )
    if kind == "executed":
        output = data.get("output")
        return Executed(pid, str(data.get("node")), output if isinstance(output, dict) else {})
    if kind == "execution_success":
        return ExecutionSuccess(pid, _int_or_none(data.get("timestamp")))
    if kind == "execution_error":
        tb = data.get("traceback") or []
        return ExecutionError(
            prompt_id=pid,
            node_id=_str_or_none(data.get("node_id")),
            node_type=_str_or_none(data.get("node_type")),
            exception_type=str(data.get("exception_type", "")),
            exception_message=str(data.get("exception_message", "")),
            traceback=[str(line) for line in tb] if isinstance(tb, list) else [str(tb)],
            timestamp=_int_or_none(data.get("timestamp")),
        )
    if kind == "execution_interrupted":
        return ExecutionInterrupted(
            pid, _str_or_none(data.get("node_id")), _str_or_none(data.get("node_type"))
        )
    return None


def events_from_history(entry: dict[str, Any]) -> list[Event]:
    """The final events of a finished prompt, from its ``/history`` entry's status messages.

    Used when the websocket missed the end (dropped connection): history is the record.
    """
    status = entry.get("status") or {}
    events: list[Event] = []
    for item in status.get("messages") or []:
        if isinstance(item, list) and len(item) == 2 and isinstance(item[1], dict):
            event = parse_event({"type": item[0], "data": item[1]})
            if event is not None:
                events.append(event)
    return events
