"""Prompt execution: output caches, the executor and the prompt worker that feeds it.

This is the part of ComfyUI a worker handler observes through timing and events, so the
stand-in reproduces ComfyUI 0.3.64's ``execution.py`` and ``main.prompt_worker`` behaviour
(the queue and history it serves are in ``prompt_queue``):

* **Caching** (classic): a node's cache key is its class, its literal inputs, its
  ``IS_CHANGED`` value and, recursively, the keys of its ancestors. Only nodes of the current
  prompt are kept, so an identical prompt right after the previous one is served entirely from
  cache: no node runs, no file is written, and history points at the previous files.
  ``/free {"free_memory": true}`` empties the cache once the worker is idle.
* **Events**: ``execution_start``, ``execution_cached``, ``executing``, ``executed``,
  ``execution_success``/``execution_error`` go only to the prompt's ``client_id`` (and
  nowhere without one); ``progress`` and ``progress_state`` go to the client, or to *every*
  socket when the prompt has no ``client_id``, as ComfyUI's ``send_sync(..., None)`` does;
  ``execution_interrupted`` goes to the client, or to everyone.
* **Interrupts** are a flag checked before each node runs and at each progress tick; it is
  cleared when the next prompt starts, so an interrupt sent while idle has no effect.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import os
import signal
import struct
import sys
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from io import BytesIO
from typing import Any, NoReturn, Protocol

from PIL import Image

from .config import CacheMode, StandinSettings
from .folders import FolderPaths
from .nodes import InterruptProcessing, Node, NodeOutput
from .prompt_queue import ExecutionStatus, PromptQueue
from .registry import NodeRegistry
from .validation import full_type_name, is_link

log = logging.getLogger("comfyui_standin")

OOM_TIPS = (
    "This error means you ran out of memory on your GPU.\n\nTIPS: If the workflow worked before "
    "you might have accidentally set the batch_size to a large number."
)


class BinaryEvent:
    """Binary websocket frame types (4-byte big-endian prefix)."""

    PREVIEW_IMAGE = 1
    TEXT = 3
    PREVIEW_IMAGE_WITH_METADATA = 4


class MessageSink(Protocol):
    """Where events go (the websocket hub in ``server.py``)."""

    def send_sync(self, event: str | int, data: Any, sid: str | None = None) -> None: ...

    def supports_feature(self, sid: str | None, feature: str) -> bool: ...

    async def drop_all(self, *, graceful: bool) -> int: ...


def timestamp_ms() -> int:
    return int(time.time() * 1000)


class InterruptFlag:
    """ComfyUI's global ``interrupt_processing`` flag (consumed when it fires)."""

    def __init__(self) -> None:
        self.requested = False

    def set(self, value: bool = True) -> None:
        self.requested = value

    def raise_if_set(self) -> None:
        if self.requested:
            self.requested = False
            raise InterruptProcessing()


# -- caches ---------------------------------------------------------------------------------


class _Unhashable:
    """Stands for a value that cannot be part of a cache key; equal only to itself."""


def to_hashable(value: Any) -> Any:
    """Nested lists/dicts → frozensets, so a node signature can be a dict key."""
    if isinstance(value, (int, float, str, bool, type(None))):
        return value
    if isinstance(value, Mapping):
        return frozenset((to_hashable(k), to_hashable(v)) for k, v in sorted(value.items()))
    if isinstance(value, Sequence):
        return frozenset(zip(itertools.count(), [to_hashable(v) for v in value], strict=False))
    return _Unhashable()


class SignatureCache:
    """Values keyed by node signature; ``set_prompt`` maps the current node ids to keys.

    ``CLASSIC`` drops every entry not used by the current prompt; ``LRU`` keeps up to
    ``max_size`` entries across prompts; ``NONE`` forgets everything between prompts.
    """

    def __init__(self, mode: CacheMode, max_size: int = 0) -> None:
        self.mode = mode
        self.max_size = max_size
        self.cache: OrderedDict[Any, Any] = OrderedDict()
        self.keys: dict[str, Any] = {}

    def set_prompt(self, keys: dict[str, Any]) -> None:
        self.keys = keys
        used = set(keys.values())
        if self.mode is CacheMode.CLASSIC:
            for key in [k for k in self.cache if k not in used]:
                del self.cache[key]
        elif self.mode is CacheMode.NONE:
            self.cache.clear()
        else:
            while len(self.cache) > self.max_size:
                oldest = next((k for k in self.cache if k not in used), None)
                if oldest is None:
                    break
                del self.cache[oldest]

    def all_node_ids(self) -> list[str]:
        return list(self.keys)

    def get(self, node_id: str) -> Any:
        key = self.keys.get(node_id)
        if key is None or key not in self.cache:
            return None
        if self.mode is CacheMode.LRU:
            self.cache.move_to_end(key)
        return self.cache[key]

    def set(self, node_id: str, value: Any) -> None:
        self.cache[self.keys[node_id]] = value

    def clear(self) -> None:
        self.cache.clear()


class SignatureBuilder:
    """Computes ComfyUI's input signatures (``CacheKeySetInputSignature``) for one prompt."""

    def __init__(self, prompt: dict[str, Any], registry: NodeRegistry, paths: FolderPaths) -> None:
        self.prompt = prompt
        self.registry = registry
        self.paths = paths
        self._is_changed: dict[str, Any] = {}

    def is_changed(self, node_id: str) -> Any:
        if node_id in self._is_changed:
            return self._is_changed[node_id]
        node = self.prompt[node_id]
        cls = self.registry.get(node["class_type"])
        value: Any = False
        if cls is not None and cls.HAS_FINGERPRINT:
            literals = {k: v for k, v in node["inputs"].items() if not is_link(v)}
            links = {k: None for k, v in node["inputs"].items() if is_link(v)}
            try:
                value = [cls.fingerprint(self.paths, **literals, **links)]
            except Exception as ex:
                log.warning("WARNING: %s", ex)
                value = float("nan")
        self._is_changed[node_id] = value
        return value

    def signature(self, node_id: str) -> Any:
        ancestors: list[str] = []
        order: dict[str, int] = {}
        self._ancestry(node_id, ancestors, order)
        parts = [self._immediate(node_id, order)]
        parts.extend(self._immediate(a, order) for a in ancestors)
        return to_hashable(parts)

    def _immediate(self, node_id: str, order: dict[str, int]) -> list[Any]:
        if node_id not in self.prompt:
            return [float("nan")]  # a missing node can never be cached
        node = self.prompt[node_id]
        class_type = node["class_type"]
        cls = self.registry.get(class_type)
        parts: list[Any] = [class_type, self.is_changed(node_id)]
        hidden = cls.INFO["input"].get("hidden", {}) if cls is not None else {}
        if "UNIQUE_ID" in hidden.values():
            parts.append(node_id)
        inputs = node["inputs"]  # like ComfyUI: a node without "inputs" breaks the worker
        for key in sorted(inputs.keys()):
            value = inputs[key]
            if is_link(value):
                parts.append((key, ("ANCESTOR", order[value[0]], value[1])))
            else:
                parts.append((key, value))
        return parts

    def _ancestry(self, node_id: str, ancestors: list[str], order: dict[str, int]) -> None:
        if node_id not in self.prompt:
            return
        inputs = self.prompt[node_id]["inputs"]
        for key in sorted(inputs.keys()):
            value = inputs[key]
            if is_link(value) and value[0] not in order:
                ancestors.append(value[0])
                order[value[0]] = len(ancestors) - 1
                self._ancestry(value[0], ancestors, order)


# -- progress -------------------------------------------------------------------------------


class ProgressRegistry:
    """Per-prompt node states behind ``progress_state`` events."""

    def __init__(self, prompt_id: str, sink: MessageSink, client_id: str | None) -> None:
        self.prompt_id = prompt_id
        self.sink = sink
        self.client_id = client_id
        self.nodes: dict[str, dict[str, Any]] = {}

    def _entry(self, node_id: str) -> dict[str, Any]:
        return self.nodes.setdefault(node_id, {"state": "pending", "value": 0, "max": 1})

    def start(self, node_id: str) -> None:
        self._entry(node_id).update(state="running", value=0.0, max=1.0)
        self._send()

    def update(self, node_id: str, value: float, total: float) -> None:
        self._entry(node_id).update(state="running", value=value, max=total)
        self._send()

    def finish(self, node_id: str) -> None:
        entry = self._entry(node_id)
        entry.update(state="finished", value=entry["max"])
        self._send()

    def _send(self) -> None:
        active = {
            node_id: {
                "value": state["value"],
                "max": state["max"],
                "state": state["state"],
                "node_id": node_id,
                "prompt_id": self.prompt_id,
                "display_node_id": node_id,
                "parent_node_id": None,
                "real_node_id": node_id,
            }
            for node_id, state in self.nodes.items()
            if state["state"] != "pending"
        }
        self.sink.send_sync("progress_state", {"prompt_id": self.prompt_id, "nodes": active}, self.client_id)


# -- execution ------------------------------------------------------------------------------


class ExecutionResult(Enum):
    SUCCESS = 0
    FAILURE = 1


class NodeNotFoundError(Exception):
    """A link points at a node the prompt does not have (only possible through an input the
    node class does not declare, since declared inputs are validated)."""


class ExecutionList:
    """Topological order over the nodes the outputs need, skipping cached ancestors.

    Ready nodes are picked the way ComfyUI's ``ux_friendly_pick_node`` does: output nodes
    first, then nodes feeding an output, then nodes two steps away, then the first ready one.
    """

    def __init__(
        self, prompt: dict[str, Any], registry: NodeRegistry, is_cached: Callable[[str], bool]
    ) -> None:
        self.prompt = prompt
        self.registry = registry
        self.is_cached = is_cached
        self.pending: dict[str, bool] = {}
        self.block_count: dict[str, int] = {}
        self.blocking: dict[str, dict[str, set[Any]]] = {}

    def _get_node(self, node_id: str) -> dict[str, Any]:
        if node_id not in self.prompt:
            raise NodeNotFoundError(f"Node {node_id} not found")
        node: dict[str, Any] = self.prompt[node_id]
        return node

    def _is_output(self, node_id: str) -> bool:
        cls = self.registry.get(self.prompt[node_id]["class_type"])
        return cls is not None and cls.is_output_node()

    def add_node(self, root: str) -> None:
        stack = [root]
        links: list[tuple[str, Any, str]] = []
        while stack:
            node_id = stack.pop()
            if node_id in self.pending:
                continue
            self.pending[node_id] = True
            self.block_count[node_id] = 0
            self.blocking[node_id] = {}
            for value in self._get_node(node_id)["inputs"].values():
                if is_link(value) and not self.is_cached(value[0]):
                    stack.append(value[0])
                    links.append((value[0], value[1], node_id))
        for source, socket, target in links:
            self._add_strong_link(source, socket, target)

    def _add_strong_link(self, source: str, socket: Any, target: str) -> None:
        if self.is_cached(source):
            return
        self.add_node(source)
        if target not in self.blocking[source]:
            self.blocking[source][target] = set()
            self.block_count[target] += 1
        self.blocking[source][target].add(socket)

    def is_empty(self) -> bool:
        return not self.pending

    def stage(self) -> str | None:
        ready = [n for n in self.pending if self.block_count[n] == 0]
        if not ready:
            return None
        for node_id in ready:
            if self._is_output(node_id):
                return node_id
        for node_id in ready:
            if any(self._is_output(b) for b in self.blocking[node_id]):
                return node_id
        for node_id in ready:
            for blocked in self.blocking[node_id]:
                if any(self._is_output(b) for b in self.blocking[blocked]):
                    return node_id
        return ready[0]

    def complete(self, node_id: str) -> None:
        del self.pending[node_id]
        for blocked in self.blocking[node_id]:
            self.block_count[blocked] -= 1
        del self.blocking[node_id]


def format_value(value: Any) -> Any:
    """How ``current_inputs`` shows a value: JSON scalars as is, anything else as ``str``."""
    if value is None or isinstance(value, (int, float, bool, str)):
        return value
    return str(value)


class ExecutionContext:
    """The :class:`~.nodes.NodeContext` handed to a running node."""

    def __init__(self, executor: PromptExecutor, prompt_id: str, node_id: str) -> None:
        self._executor = executor
        self.prompt_id = prompt_id
        self.node_id = node_id
        self.paths = executor.settings.paths
        self.disable_metadata = executor.settings.disable_metadata
        self.preview_method = executor.settings.preview_method

    def check_interrupt(self) -> None:
        self._executor.interrupt.raise_if_set()

    async def progress(self, value: float, total: float, preview: Image.Image | None = None) -> None:
        self.check_interrupt()
        ex = self._executor
        assert ex.progress is not None
        ex.progress.update(self.node_id, value, total)
        ex.sink.send_sync(
            "progress",
            {"value": value, "max": total, "prompt_id": self.prompt_id, "node": self.node_id},
            ex.client_id,
        )
        if preview is not None:
            self._send_preview(preview)

    def _send_preview(self, preview: Image.Image) -> None:
        ex = self._executor
        buffer = BytesIO()
        preview.save(buffer, format="JPEG", quality=95)
        if ex.sink.supports_feature(ex.client_id, "supports_preview_metadata"):
            metadata = {
                "node_id": self.node_id,
                "prompt_id": self.prompt_id,
                "display_node_id": self.node_id,
                "parent_node_id": None,
                "real_node_id": self.node_id,
                "image_type": "image/jpeg",
            }
            encoded = json.dumps(metadata).encode()
            payload = struct.pack(">I", len(encoded)) + encoded + buffer.getvalue()
            ex.sink.send_sync(BinaryEvent.PREVIEW_IMAGE_WITH_METADATA, payload, ex.client_id)
        else:
            ex.sink.send_sync(
                BinaryEvent.PREVIEW_IMAGE, struct.pack(">I", 1) + buffer.getvalue(), ex.client_id
            )

    async def sleep(
        self, seconds: float, *, tick: float = 0.01, report_progress: bool = False, interruptible: bool = True
    ) -> None:
        if not interruptible:
            await asyncio.sleep(seconds)
            return
        total_ticks = max(1, math.ceil(seconds / tick))
        deadline = time.monotonic() + seconds
        for index in range(total_ticks):
            await asyncio.sleep(max(0.0, min(tick, deadline - time.monotonic())))
            if report_progress:
                await self.progress(index + 1, total_ticks)
            else:
                self.check_interrupt()

    def send_text(self, text: str) -> None:
        node = self.node_id.encode()
        message = struct.pack(">I", len(node)) + node + text.encode()
        self._executor.sink.send_sync(BinaryEvent.TEXT, message, self._executor.client_id)

    async def drop_websockets(self, *, graceful: bool) -> int:
        return await self._executor.sink.drop_all(graceful=graceful)

    def crash(self, exit_code: int, signal_name: str) -> NoReturn:
        if not self._executor.settings.process_mode:
            raise RuntimeError(
                "StandinCrash needs the stand-in in process mode (python main.py from "
                "make_fake_comfyui_dir, or python -m comfyui_standin); an in-process "
                f"stand-in cannot exit with code {exit_code} or signal {signal_name} without "
                "killing the test run."
            )
        message = "CUDA error: an illegal memory access was encountered"
        log.error("!!! Exception during processing !!! %s", message)
        fake_traceback = (
            "Traceback (most recent call last):\n"
            '  File "/comfyui/execution.py", line 496, in execute\n'
            "    output_data, output_ui, has_subgraph, has_pending_tasks = await get_output_data(...)\n"
            '  File "/comfyui/comfy/samplers.py", line 1048, in sample\n'
            "    return sample(self.model, noise, positive, negative, cfg, self.device, ...)\n"
            f"torch.AcceleratorError: {message}\n"
            "CUDA kernel errors might be asynchronously reported at some other API call, so the "
            "stacktrace below might be incorrect.\n"
        )
        log.error(fake_traceback)
        for handler in logging.getLogger().handlers + log.handlers:
            handler.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        if signal_name != "none":
            os.kill(os.getpid(), getattr(signal, signal_name))
            time.sleep(5)  # the signal ends the process before this returns
        os._exit(exit_code)


@dataclass
class ExecutionRecord:
    """One node execution (cache misses only), for tests asking "did it really run?"."""

    prompt_id: str
    node_id: str
    class_type: str


@dataclass
class PromptExecutor:
    """Runs one prompt at a time; keeps caches and per-(node, class) instances between them."""

    settings: StandinSettings
    registry: NodeRegistry
    sink: MessageSink
    interrupt: InterruptFlag = field(default_factory=InterruptFlag)
    on_node_start: Callable[[ExecutionRecord], None] | None = None
    client_id: str | None = None
    last_node_id: str | None = None
    progress: ProgressRegistry | None = None
    success: bool = True
    status_messages: list[list[Any]] = field(default_factory=list)
    history_result: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every cached output and node instance (``/free {"free_memory": true}``)."""
        mode, size = self.settings.cache_mode, self.settings.cache_lru_size
        self.outputs = SignatureCache(mode, size)
        self.ui = SignatureCache(mode, size)
        self.objects: dict[tuple[str, str], Node] = {}
        self.status_messages = []
        self.success = True

    def add_message(self, event: str, data: dict[str, Any], *, broadcast: bool) -> None:
        data = {**data, "timestamp": timestamp_ms()}
        self.status_messages.append([event, data])
        if self.client_id is not None or broadcast:
            self.sink.send_sync(event, data, self.client_id)

    async def execute(
        self, prompt: dict[str, Any], prompt_id: str, extra_data: dict[str, Any], execute_outputs: list[str]
    ) -> None:
        self.interrupt.set(False)
        self.client_id = extra_data.get("client_id")
        self.status_messages = []
        self.add_message("execution_start", {"prompt_id": prompt_id}, broadcast=False)

        self.progress = ProgressRegistry(prompt_id, self.sink, self.client_id)
        signatures = SignatureBuilder(prompt, self.registry, self.settings.paths)
        keys = {node_id: signatures.signature(node_id) for node_id in prompt}
        self.outputs.set_prompt(keys)
        self.ui.set_prompt(keys)
        self._clean_objects(prompt)

        cached = [node_id for node_id in prompt if self.outputs.get(node_id) is not None]
        self.add_message("execution_cached", {"nodes": cached, "prompt_id": prompt_id}, broadcast=False)
        executed: list[str] = []
        current_outputs = self.outputs.all_node_ids()
        execution_list = ExecutionList(prompt, self.registry, lambda n: self.outputs.get(n) is not None)
        for output_id in execute_outputs:
            execution_list.add_node(output_id)

        while not execution_list.is_empty():
            staged = execution_list.stage()
            if staged is None:
                self._report_error(
                    prompt_id,
                    prompt,
                    current_outputs,
                    executed,
                    {
                        "node_id": next(iter(execution_list.pending)),
                        "exception_message": "Dependency cycle detected",
                        "exception_type": "graph.DependencyCycleError",
                        "traceback": [],
                        "current_inputs": [],
                    },
                    None,
                )
                break
            result, error, exception = await self._execute_node(
                prompt, prompt_id, staged, extra_data, executed
            )
            self.success = result is not ExecutionResult.FAILURE
            if result is ExecutionResult.FAILURE:
                assert error is not None
                self._report_error(prompt_id, prompt, current_outputs, executed, error, exception)
                break
            execution_list.complete(staged)
        else:
            self.add_message("execution_success", {"prompt_id": prompt_id}, broadcast=False)

        outputs: dict[str, Any] = {}
        meta: dict[str, Any] = {}
        for node_id in self.ui.all_node_ids():
            info = self.ui.get(node_id)
            if info is not None:
                outputs[node_id] = info["output"]
                meta[node_id] = info["meta"]
        self.history_result = {"outputs": outputs, "meta": meta}
        self.last_node_id = None

    def _clean_objects(self, prompt: dict[str, Any]) -> None:
        used = {(node_id, node["class_type"]) for node_id, node in prompt.items()}
        if self.settings.cache_mode is CacheMode.NONE:
            used = set()
        for key in [k for k in self.objects if k not in used]:
            del self.objects[key]

    def _input_data(
        self,
        node: dict[str, Any],
        cls: type[Node],
        node_id: str,
        prompt: dict[str, Any],
        extra_data: dict[str, Any],
    ) -> dict[str, Any]:
        """``get_input_data``: literals, upstream outputs and hidden inputs, by input name."""
        class_inputs = cls.input_types(self.settings.paths)
        known = {
            **class_inputs.get("required", {}),
            **class_inputs.get("optional", {}),
            **class_inputs.get("hidden", {}),
        }
        data: dict[str, Any] = {}
        for name, value in node["inputs"].items():
            if is_link(value):
                upstream = self.outputs.get(value[0])
                slot = value[1]
                data[name] = upstream[slot] if upstream is not None and slot < len(upstream) else None
            elif name in known:
                data[name] = value
        for name, kind in class_inputs.get("hidden", {}).items():
            if kind == "PROMPT":
                data[name] = prompt
            elif kind == "EXTRA_PNGINFO":
                data[name] = extra_data.get("extra_pnginfo")
            elif kind == "UNIQUE_ID":
                data[name] = node_id
        return data

    async def _execute_node(
        self,
        prompt: dict[str, Any],
        prompt_id: str,
        node_id: str,
        extra_data: dict[str, Any],
        executed: list[str],
    ) -> tuple[ExecutionResult, dict[str, Any] | None, BaseException | None]:
        assert self.progress is not None
        node = prompt[node_id]
        class_type = node["class_type"]
        cls = self.registry.get(class_type)
        assert cls is not None
        if self.outputs.get(node_id) is not None:
            if self.client_id is not None:
                cached_ui = self.ui.get(node_id) or {}
                self.sink.send_sync(
                    "executed",
                    {
                        "node": node_id,
                        "display_node": node_id,
                        "output": cached_ui.get("output"),
                        "prompt_id": prompt_id,
                    },
                    self.client_id,
                )
            self.progress.finish(node_id)
            return ExecutionResult.SUCCESS, None, None

        input_data: dict[str, Any] | None = None
        try:
            self.progress.start(node_id)
            input_data = self._input_data(node, cls, node_id, prompt, extra_data)
            if self.client_id is not None:
                self.last_node_id = node_id
                self.sink.send_sync(
                    "executing",
                    {"node": node_id, "display_node": node_id, "prompt_id": prompt_id},
                    self.client_id,
                )
            obj = self.objects.get((node_id, class_type))
            if obj is None:
                obj = cls()
                self.objects[(node_id, class_type)] = obj
            self.interrupt.raise_if_set()
            if self.on_node_start is not None:
                self.on_node_start(ExecutionRecord(prompt_id, node_id, class_type))
            output: NodeOutput = await obj.execute(ExecutionContext(self, prompt_id, node_id), **input_data)
            if output.ui:
                ui = {key: list(values) for key, values in output.ui.items()}
                self.ui.set(
                    node_id,
                    {
                        "meta": {
                            "node_id": node_id,
                            "display_node": node_id,
                            "parent_node": None,
                            "real_node_id": node_id,
                        },
                        "output": ui,
                    },
                )
                if self.client_id is not None:
                    self.sink.send_sync(
                        "executed",
                        {"node": node_id, "display_node": node_id, "output": ui, "prompt_id": prompt_id},
                        self.client_id,
                    )
            self.outputs.set(node_id, list(output.result))
        except InterruptProcessing as iex:
            log.info("Processing interrupted")
            return ExecutionResult.FAILURE, {"node_id": node_id}, iex
        except Exception as ex:
            _, _, tb = sys.exc_info()
            exception_type = full_type_name(type(ex))
            formatted = (
                {}
                if input_data is None
                else {name: [format_value(value)] for name, value in input_data.items()}
            )
            log.error("!!! Exception during processing !!! %s", ex)
            log.error(traceback.format_exc())
            tips = OOM_TIPS if exception_type == "torch.OutOfMemoryError" else ""
            if tips:
                log.error("Got an OOM, unloading all loaded models.")
            return (
                ExecutionResult.FAILURE,
                {
                    "node_id": node_id,
                    "exception_message": f"{ex}\n{tips}",
                    "exception_type": exception_type,
                    "traceback": traceback.format_tb(tb),
                    "current_inputs": formatted,
                },
                ex,
            )

        self.progress.finish(node_id)
        executed.append(node_id)
        return ExecutionResult.SUCCESS, None, None

    def _report_error(
        self,
        prompt_id: str,
        prompt: dict[str, Any],
        current_outputs: list[str],
        executed: list[str],
        error: dict[str, Any],
        exception: BaseException | None,
    ) -> None:
        node_id = error["node_id"]
        class_type = prompt[node_id]["class_type"]
        if isinstance(exception, InterruptProcessing):
            self.add_message(
                "execution_interrupted",
                {
                    "prompt_id": prompt_id,
                    "node_id": node_id,
                    "node_type": class_type,
                    "executed": list(executed),
                },
                broadcast=True,
            )
            return
        self.add_message(
            "execution_error",
            {
                "prompt_id": prompt_id,
                "node_id": node_id,
                "node_type": class_type,
                "executed": list(executed),
                "exception_message": error["exception_message"],
                "exception_type": error["exception_type"],
                "traceback": error["traceback"],
                "current_inputs": error["current_inputs"],
                "current_outputs": list(current_outputs),
            },
            broadcast=False,
        )


class PromptWorker:
    """The single prompt worker: queue → executor → history, then pending ``/free`` flags."""

    def __init__(self, queue: PromptQueue, executor: PromptExecutor, sink: MessageSink) -> None:
        self.queue = queue
        self.executor = executor
        self.sink = sink
        self.last_prompt_id: str | None = None

    async def run(self) -> None:
        """Serve the queue until cancelled.

        An exception outside node code (for example a link to a missing node through an
        undeclared input, or a node without ``inputs`` that no output needs) ends the worker
        for good, as it ends ComfyUI's prompt thread: the prompt stays "running", nothing else
        executes, HTTP keeps answering. The traceback is logged like Python logs a dying thread.
        """
        try:
            await self._serve()
        except Exception:
            log.error("Exception in thread Thread-2 (prompt_worker):\n%s", traceback.format_exc())
            log.error(
                "[standin] the prompt worker has stopped, like ComfyUI's would: no further "
                "prompt will execute until the server is restarted"
            )

    async def _serve(self) -> None:
        while True:
            got = await self.queue.get()
            if got is not None:
                item, item_id = got
                started = time.perf_counter()
                self.last_prompt_id = item[1]
                await self.executor.execute(item[2], item[1], item[3], item[4])
                ex = self.executor
                self.queue.task_done(
                    item_id,
                    ex.history_result,
                    ExecutionStatus("success" if ex.success else "error", ex.success, ex.status_messages),
                )
                if ex.client_id is not None:
                    self.sink.send_sync("executing", {"node": None, "prompt_id": item[1]}, ex.client_id)
                log.info("Prompt executed in %.2f seconds", time.perf_counter() - started)
            flags = self.queue.get_flags()
            free_memory = flags.get("free_memory", False)
            if flags.get("unload_models", free_memory):
                log.debug("unloading all models (stand-in: nothing to unload)")
            if free_memory:
                self.executor.reset()
