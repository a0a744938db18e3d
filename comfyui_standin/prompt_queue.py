"""ComfyUI's prompt queue and history (``execution.PromptQueue`` in ComfyUI 0.3.64).

* **Queue**: a min-heap of ``(number, prompt_id, prompt, extra_data, outputs)`` tuples; one
  worker task takes the smallest number, so ``front`` (negative numbers) jumps ahead. Every
  change calls ``on_change`` (the server broadcasts a ``status`` event).
* **History**: written only when a prompt ends (success, error or interrupt), with the
  ``prompt`` tuple, ``outputs``, ``status`` (``messages`` with millisecond timestamps) and
  ``meta``; ``auth_token_comfy_org``/``api_key_comfy_org`` are stripped; 10,000 entries max.
* **Flags** (``/free``) wake the worker even with nothing queued.
"""

from __future__ import annotations

import asyncio
import copy
import heapq
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAXIMUM_HISTORY_SIZE = 10000
SENSITIVE_EXTRA_DATA_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")

QueueItem = tuple[Any, str, dict[str, Any], dict[str, Any], list[str]]


@dataclass
class ExecutionStatus:
    status_str: str
    completed: bool
    messages: list[list[Any]]


class PromptQueue:
    """Pending heap, running items and history, with ComfyUI's read/write semantics."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        self._heap: list[QueueItem] = []
        self._wakeup = asyncio.Event()
        self.task_counter = 0
        self.currently_running: dict[int, list[Any]] = {}
        self.history: dict[str, dict[str, Any]] = {}
        self.flags: dict[str, Any] = {}

    def put(self, item: QueueItem) -> None:
        heapq.heappush(self._heap, item)
        self._on_change()
        self._wakeup.set()

    async def get(self) -> tuple[QueueItem, int] | None:
        """Next item, or ``None`` when woken by a flag (``/free``) with nothing queued."""
        while not self._heap:
            self._wakeup.clear()
            await self._wakeup.wait()
            if not self._heap:
                return None
        item = heapq.heappop(self._heap)
        item_id = self.task_counter
        self.currently_running[item_id] = copy.deepcopy(list(item))
        self.task_counter += 1
        self._on_change()
        return item, item_id

    def task_done(self, item_id: int, history_result: dict[str, Any], status: ExecutionStatus | None) -> None:
        prompt = self.currently_running.pop(item_id)
        if len(self.history) > MAXIMUM_HISTORY_SIZE:
            self.history.pop(next(iter(self.history)))
        for key in SENSITIVE_EXTRA_DATA_KEYS:
            prompt[3].pop(key, None)
        status_dict = None
        if status is not None:
            status_dict = copy.deepcopy(
                {"status_str": status.status_str, "completed": status.completed, "messages": status.messages}
            )
        entry: dict[str, Any] = {"prompt": prompt, "outputs": {}, "status": status_dict}
        entry.update(history_result)
        self.history[prompt[1]] = entry
        self._on_change()

    def current_queue(self) -> tuple[list[Any], list[Any]]:
        """(running, pending) — pending in heap order, not sorted, like ComfyUI."""
        return list(self.currently_running.values()), list(self._heap)

    def tasks_remaining(self) -> int:
        return len(self._heap) + len(self.currently_running)

    def wipe_queue(self) -> None:
        self._heap = []
        self._on_change()

    def delete_queue_item(self, predicate: Callable[[QueueItem], bool]) -> bool:
        for index, item in enumerate(self._heap):
            if predicate(item):
                if len(self._heap) == 1:
                    self.wipe_queue()
                else:
                    self._heap.pop(index)
                    heapq.heapify(self._heap)
                self._on_change()
                return True
        return False

    def get_history(
        self, prompt_id: str | None = None, max_items: int | None = None, offset: int = -1
    ) -> dict[str, Any]:
        """``GET /history`` semantics: oldest first; only ``max_items`` → the last N."""
        if prompt_id is None:
            out: dict[str, Any] = {}
            if offset < 0 and max_items is not None:
                offset = len(self.history) - max_items
            for index, (key, value) in enumerate(self.history.items()):
                if index >= offset:
                    out[key] = value
                    if max_items is not None and len(out) >= max_items:
                        break
            return copy.deepcopy(out)
        if prompt_id in self.history:
            return {prompt_id: copy.deepcopy(self.history[prompt_id])}
        return {}

    def wipe_history(self) -> None:
        self.history = {}

    def delete_history_item(self, prompt_id: str) -> None:
        self.history.pop(prompt_id, None)

    def set_flag(self, name: str, value: Any) -> None:
        self.flags[name] = value
        self._wakeup.set()

    def get_flags(self) -> dict[str, Any]:
        flags, self.flags = self.flags, {}
        return flags
