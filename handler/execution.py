"""Running one prompt on ComfyUI and following it to its end.

``run_prompt`` connects the websocket first (so no event is missed), queues the prompt,
then reads events until the prompt ends, with three guards running alongside:

- a deadline: on expiry the prompt is interrupted and removed from the queue (``TIMEOUT``);
- a health tick every ``HEALTH_CHECK_INTERVAL``: the process is alive and, after a missed
  event, ``/history`` tells whether the prompt ended anyway;
- a dropped websocket: reconnect; if ComfyUI died meanwhile, ``COMFY_CRASHED``.

Cancellation (RunPod's stop channel cancels the job's task) interrupts ComfyUI the same way
as a timeout, then propagates.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from handler import events as ev
from handler.comfy_client import ComfyClient, ComfyRequestError, PromptRejected
from handler.error_details import JobPosition, NodeFailure
from handler.errors import (
    ComfyCrashed,
    ComfyUnreachable,
    ExecutionFailed,
    JobTimeout,
    PromptInterrupted,
    WorkflowInvalid,
)
from handler.supervisor import Comfy
from handler.validation import details_from_comfy

log = logging.getLogger("comfy_runpod.execution")

ProgressSink = Callable[[dict[str, Any]], None]
# How long to look for the process's exit after the websocket drops, before reconnecting.
_CRASH_GRACE_S = 0.5
_RECONNECT_ATTEMPTS = 5


@dataclass
class PromptResult:
    """A finished prompt: its history entry and when things happened."""

    prompt_id: str
    history: dict[str, Any]
    queued_at: float  # perf_counter when POST /prompt returned
    started_at: float | None = None  # perf_counter at execution_start
    finished_at: float | None = None  # perf_counter at the final event
    cached_nodes: list[str] = field(default_factory=list)

    def comfy_execution_s(self) -> float | None:
        """Execution time by ComfyUI's own timestamps (execution_start -> end)."""
        stamps: dict[str, int] = {}
        for name, data in (self.history.get("status") or {}).get("messages") or []:
            if isinstance(data, dict) and isinstance(data.get("timestamp"), int):
                stamps[name] = data["timestamp"]
        start = stamps.get("execution_start")
        end = stamps.get("execution_success") or stamps.get("execution_error")
        return (end - start) / 1000 if start is not None and end is not None else None


class ProgressReporter:
    """Turns websocket events into throttled progress updates for the caller."""

    def __init__(self, sink: ProgressSink | None, total_nodes: int, interval_s: float) -> None:
        self.sink = sink
        self.total = total_nodes
        self.interval = interval_s
        self.done: set[str] = set()
        self.node: str | None = None
        self.step: int | None = None
        self.max: int | None = None
        self._last_sent = 0.0
        self._class_of: dict[str, str] = {}

    def set_classes(self, workflow: dict[str, Any]) -> None:
        self._class_of = {k: str(v.get("class_type")) for k, v in workflow.items() if isinstance(v, dict)}

    def on_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.ExecutionCached):
            self.done.update(event.nodes)
        elif isinstance(event, ev.Executing) and event.node is not None:
            if self.node is not None:
                self.done.add(self.node)
            self.node, self.step, self.max = event.node, None, None
            self._send(force=False)
        elif isinstance(event, ev.Progress):
            self.node, self.step, self.max = event.node or self.node, event.value, event.max
            self._send(force=event.value == event.max)

    def snapshot(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "class_type": self._class_of.get(self.node or ""),
            "step": self.step,
            "max": self.max,
            "nodes_done": min(len(self.done), self.total),
            "nodes_total": self.total,
        }

    def _send(self, *, force: bool) -> None:
        if self.sink is None:
            return
        now = time.monotonic()
        if not force and now - self._last_sent < self.interval:
            return
        self._last_sent = now
        try:
            self.sink(self.snapshot())
        except Exception:  # a progress failure must never fail the job
            log.exception("progress update failed")


class PromptRun:
    """One prompt on ComfyUI, from queueing to its history entry."""

    def __init__(
        self,
        client: ComfyClient,
        comfy: Comfy,
        *,
        job_id: str,
        health_interval_s: float,
        progress: ProgressReporter,
    ) -> None:
        self.client = client
        self.comfy = comfy
        self.job_id = job_id
        self.health_interval = health_interval_s
        self.progress = progress
        self.client_id = uuid.uuid4().hex
        self.prompt_id = str(uuid.uuid4())
        self.generation = comfy.generation
        # Set before POST /prompt: a cancel while that request is in flight may still find
        # the prompt queued, and the prompt id is ours, so it can be interrupted either way.
        self.submitted = False
        self._ws: aiohttp.ClientWebSocketResponse | None = None

    async def connect(self, timeout: float) -> None:
        """Open the websocket (before queueing, so no event is missed).

        It doubles as the per-job check that ComfyUI answers: raises ComfyRequestError if
        it does not within ``timeout`` seconds.
        """
        if self._ws is None or self._ws.closed:
            self._ws = await self.client.websocket(self.client_id, timeout=timeout)

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()

    async def run(self, prompt: dict[str, Any], deadline: float) -> PromptResult:
        """Queue ``prompt`` and wait for it; ``deadline`` is a ``time.monotonic()`` value."""
        try:
            await self.connect(timeout=30)
            self.submitted = True
            try:
                queued = await self.client.queue_prompt(prompt, self.client_id, self.prompt_id)
            except PromptRejected as exc:
                raise WorkflowInvalid(
                    "ComfyUI refused the workflow: " + _rejection_summary(exc.body),
                    details_from_comfy(exc.body, prompt),
                ) from None
            result = PromptResult(self.prompt_id, {}, queued_at=time.perf_counter())
            if queued.node_errors:
                # Some outputs failed ComfyUI's validation and would be silently dropped.
                await self.abandon()
                raise WorkflowInvalid(
                    "ComfyUI refused part of the workflow (some outputs would not run)",
                    details_from_comfy({"node_errors": queued.node_errors}, prompt),
                )
            await self._follow(result, deadline)
            return result
        except asyncio.CancelledError:
            if self.submitted:
                log.warning("job %s CANCELLED: interrupting prompt %s", self.job_id, self.prompt_id)
                await asyncio.shield(self.abandon())
            raise
        finally:
            await self.close()

    async def abandon(self) -> None:
        """Interrupt the prompt if it runs and drop it from the queue (best effort, bounded)."""
        try:
            async with asyncio.timeout(3):
                await self.client.interrupt(self.prompt_id)
                await self.client.delete_from_queue([self.prompt_id])
        except (ComfyRequestError, TimeoutError) as exc:
            log.warning("could not interrupt prompt %s: %s", self.prompt_id, exc)

    async def _follow(self, result: PromptResult, deadline: float) -> None:
        final: ev.Event | None = None
        finished = False
        while not finished:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                await self.abandon()
                raise JobTimeout(
                    "the workflow ran past its time limit and was interrupted",
                    [self._position()],
                )
            assert self._ws is not None
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                # that lands just as a message arrives, and RunPod's cancel would be lost.
                async with asyncio.timeout(min(remaining, self.health_interval)):
                    message = await self._ws.receive()
            except TimeoutError:
                finished = await self._health_tick(result)
                continue
            if message.type == aiohttp.WSMsgType.TEXT:
                event = _parse(message.data)
                if event is None or getattr(event, "prompt_id", self.prompt_id) != self.prompt_id:
                    continue
                if isinstance(event, ev.ExecutionStart):
                    result.started_at = time.perf_counter()
                elif isinstance(event, ev.ExecutionCached):
                    result.cached_nodes = list(event.nodes)
                self.progress.on_event(event)
                if isinstance(event, ev.FINAL_EVENTS):
                    final = event
                    result.finished_at = time.perf_counter()
                elif isinstance(event, ev.Executing) and event.node is None:
                    finished = True  # sent after the history entry is written
            elif message.type == aiohttp.WSMsgType.BINARY:
                continue  # previews
            else:
                finished = await self._on_ws_drop(result)
        entry = await self._history(deadline)
        result.history = entry
        final = final or _final_from_history(entry)
        if isinstance(final, ev.ExecutionError):
            raise ExecutionFailed(
                f"node {final.node_id} ({final.node_type}) raised {final.exception_type}: "
                f"{final.exception_message.strip()}",
                [
                    NodeFailure(
                        final.node_id,
                        final.node_type,
                        message=final.exception_message.strip(),
                        exception_type=final.exception_type,
                        traceback=tuple(final.traceback),
                    )
                ],
            )
        if isinstance(final, ev.ExecutionInterrupted):
            raise PromptInterrupted(
                f"the prompt was interrupted in node {final.node_id} ({final.node_type}) "
                "by someone else (POST /interrupt)",
                [NodeFailure(final.node_id, final.node_type)],
            )

    async def _health_tick(self, result: PromptResult) -> bool:
        """Between events: is ComfyUI alive, and did the prompt end unseen?"""
        self._raise_if_crashed()
        try:
            entry = await self.client.history(self.prompt_id)
        except ComfyRequestError:
            if not await asyncio.to_thread(self.comfy.alive):
                self._raise_if_crashed()  # a dying process: report the crash, not the symptom
                raise ComfyUnreachable(
                    f"ComfyUI at {self.comfy.base_url} stopped answering during the job"
                ) from None
            return False
        if entry is not None:
            result.finished_at = result.finished_at or time.perf_counter()
            return True
        return False

    def _position(self, exit_code: int | None = None) -> JobPosition:
        """Where the prompt is now, for an error that stops it midway."""
        return JobPosition(
            self.prompt_id, self.progress.node, self.progress.snapshot()["class_type"], exit_code
        )

    def _raise_if_crashed(self) -> None:
        exit_info = self.comfy.exit_since(self.generation)
        if exit_info is not None:
            raise ComfyCrashed(
                f"ComfyUI {exit_info.describe()} while running the job; it is being restarted",
                [self._position(exit_code=exit_info.returncode)],
            )

    async def _on_ws_drop(self, result: PromptResult) -> bool:
        log.warning("job %s: ComfyUI websocket closed; checking ComfyUI", self.job_id)
        until = time.monotonic() + _CRASH_GRACE_S
        while time.monotonic() < until:
            self._raise_if_crashed()
            if self.comfy.exit_since(self.generation) is None and self.comfy.alive():
                break
            await asyncio.sleep(0.02)
        for attempt in range(_RECONNECT_ATTEMPTS):
            self._raise_if_crashed()
            try:
                self._ws = await self.client.websocket(self.client_id, timeout=5)
                break
            except ComfyRequestError:
                await asyncio.sleep(0.1 * 2**attempt)
        else:
            await asyncio.sleep(_CRASH_GRACE_S)
            self._raise_if_crashed()
            raise ComfyUnreachable("ComfyUI's websocket could not be reopened")
        # Events sent while disconnected are lost: history tells whether it already ended.
        return await self._health_tick(result)

    async def _history(self, deadline: float) -> dict[str, Any]:
        """The history entry; ComfyUI writes it just before its final ``executing`` event."""
        delay = 0.005
        while True:
            entry = await self.client.history(self.prompt_id)
            if entry is not None:
                return entry
            self._raise_if_crashed()
            if time.monotonic() > deadline:
                raise JobTimeout("the prompt ended but its history entry never appeared")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)


def _parse(data: str) -> ev.Event | None:
    try:
        message = json.loads(data)
    except ValueError:
        return None
    return ev.parse_event(message) if isinstance(message, dict) else None


def _final_from_history(entry: dict[str, Any]) -> ev.Event | None:
    for event in reversed(ev.events_from_history(entry)):
        if isinstance(event, ev.FINAL_EVENTS):
            return event
    return None


def _rejection_summary(body: dict[str, Any]) -> str:
    err = body.get("error")
    if isinstance(err, dict):
        text = str(err.get("message", "validation failed"))
        return f"{text} ({err['details']})" if err.get("details") else text
    return str(err or body)[:300]
