"""What every stand-in node is built on: the values flowing between nodes, the engine
services a running node gets, the :class:`Node` base class, and the real ComfyUI 0.3.64
``/object_info`` entries (``object_info.json`` next to this file).

Two families build on it, each in its module: the emulated core nodes (``core_nodes``) and the
fault-injection nodes that exist only in the stand-in (``fault_nodes``); ``registry`` offers
both to a server.

A node is a class with a ``CLASS_TYPE``, an ``INFO`` template (the object_info entry) and an
async ``execute(ctx, **inputs)`` returning :class:`NodeOutput`. Inputs arrive exactly as
ComfyUI would pass them (validated literals, upstream outputs, hidden ``prompt`` and
``extra_pnginfo``), so a wrong input name fails with the same ``TypeError`` as in ComfyUI.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NoReturn, Protocol

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from .folders import FolderPaths

_OBJECT_INFO_PATH = Path(__file__).with_name("object_info.json")
REAL_OBJECT_INFO: dict[str, dict[str, Any]] = json.loads(_OBJECT_INFO_PATH.read_text(encoding="utf-8"))

#: The stand-in pretends to be a GPU with room for this many output pixels per node: a node
#: asked for more fails with ``torch.OutOfMemoryError`` instead of exhausting the test machine.
MAX_OUTPUT_PIXELS = 64 * 1024 * 1024


class OutOfMemoryError(RuntimeError):
    """Shaped like CUDA's OOM: ComfyUI reports it as ``torch.OutOfMemoryError``."""


OutOfMemoryError.__module__ = "torch"


def check_vram(pixels: int) -> None:
    """Fail like CUDA would when a node asks for more than ``MAX_OUTPUT_PIXELS``."""
    if pixels > MAX_OUTPUT_PIXELS:
        raise OutOfMemoryError(
            "Allocation on device 0 would exceed allowed memory. (out of memory)\n"
            f"Stand-in limit: {MAX_OUTPUT_PIXELS} output pixels per node, requested {pixels}."
        )


# -- values flowing between nodes ---------------------------------------------------------


@dataclass(frozen=True)
class ImageBatch:
    """An ``IMAGE``: a batch of equally sized RGB frames (ComfyUI uses a BxHxWxC tensor)."""

    frames: tuple[Image.Image, ...]

    @property
    def width(self) -> int:
        return self.frames[0].width

    @property
    def height(self) -> int:
        return self.frames[0].height

    def __str__(self) -> str:
        return f"IMAGE(shape=[{len(self.frames)}, {self.height}, {self.width}, 3])"


@dataclass(frozen=True)
class MaskBatch:
    """A ``MASK``: one mode-``L`` image per frame (1 = masked, as ComfyUI inverts alpha)."""

    masks: tuple[Image.Image, ...]

    def __str__(self) -> str:
        first = self.masks[0]
        return f"MASK(shape=[{len(self.masks)}, {first.height}, {first.width}])"


@dataclass(frozen=True)
class ModelHandle:
    """An opaque ``MODEL``/``CLIP``/``VAE``: which file it came from and the LoRAs applied."""

    kind: str
    source: str
    loras: tuple[tuple[str, float], ...] = ()

    def __str__(self) -> str:
        return f"<{self.kind} {self.source}{' +' + str(len(self.loras)) + ' lora' if self.loras else ''}>"


@dataclass(frozen=True)
class Conditioning:
    """A ``CONDITIONING``: the encoded text (kept verbatim, so outputs can depend on it)."""

    text: str
    clip: ModelHandle

    def __str__(self) -> str:
        return f"<CONDITIONING {self.text[:40]!r}>"


@dataclass(frozen=True)
class LatentSamples:
    """The ``samples`` of a ``LATENT`` dict: shape plus a fingerprint of how it was made."""

    batch: int
    height: int
    width: int
    fingerprint: str = "empty"

    def __str__(self) -> str:
        return f"tensor(shape=[{self.batch}, 4, {self.height}, {self.width}])"


@dataclass
class NodeOutput:
    """What a node returns: values for its output slots and the UI dict for history."""

    result: tuple[Any, ...] = ()
    ui: dict[str, list[Any]] | None = None


# -- what the engine gives a node -------------------------------------------------------


class InterruptProcessing(Exception):
    """Raised at an interrupt check after ``POST /interrupt``; the engine reports it."""


class NodeContext(Protocol):
    """The engine services available to a running node (see ``executor.ExecutionContext``)."""

    prompt_id: str
    node_id: str
    paths: FolderPaths
    disable_metadata: bool
    preview_method: str

    def check_interrupt(self) -> None:
        """Raise :class:`InterruptProcessing` if an interrupt is pending (and consume it)."""

    async def progress(self, value: float, total: float, preview: Image.Image | None = None) -> None:
        """A ProgressBar tick: interrupt check, then ``progress`` + ``progress_state`` events."""

    async def sleep(
        self, seconds: float, *, tick: float = 0.01, report_progress: bool = False, interruptible: bool = True
    ) -> None:
        """Wait ``seconds``, checking for interrupts every ``tick`` if ``interruptible``."""

    def send_text(self, text: str) -> None:
        """Send a binary TEXT frame (type 3) for this node to the prompt's client."""

    async def drop_websockets(self, *, graceful: bool) -> int:
        """Close every websocket (abort the TCP connection unless ``graceful``)."""

    def crash(self, exit_code: int, signal_name: str) -> NoReturn:
        """End the process (process mode) or raise ``RuntimeError`` (in-process mode)."""


# -- node base class ----------------------------------------------------------------------

ComboProvider = Callable[[FolderPaths], list[str]]


class Node:
    """Base class: metadata from ``INFO`` plus hooks the validator and cache consult.

    Subclasses set ``CLASS_TYPE`` and ``INFO`` and implement :meth:`execute`. Optional:

    * ``DYNAMIC_COMBOS``: input name → function listing the current options (from disk);
    * ``VALIDATE_INPUTS_ARGS`` + :meth:`validate_inputs`: ComfyUI's ``VALIDATE_INPUTS``; the
      named inputs then skip the combo and min/max checks;
    * ``HAS_FINGERPRINT`` + :meth:`fingerprint`: ComfyUI's ``IS_CHANGED``, part of the cache
      signature (NaN means "never cached").

    One instance exists per (node id, class) and survives between prompts like ComfyUI's
    object cache, which is why ``PreviewImage`` keeps its random file prefix.
    """

    CLASS_TYPE: ClassVar[str]
    INFO: ClassVar[dict[str, Any]]
    DYNAMIC_COMBOS: ClassVar[dict[str, ComboProvider]] = {}
    VALIDATE_INPUTS_ARGS: ClassVar[tuple[str, ...] | None] = None
    HAS_FINGERPRINT: ClassVar[bool] = False

    @classmethod
    def input_types(cls, paths: FolderPaths) -> dict[str, dict[str, Any]]:
        """``INPUT_TYPES()``: the ``input`` entry with on-disk combos refreshed."""
        inputs: dict[str, dict[str, Any]] = copy.deepcopy(cls.INFO["input"])
        for name, provider in cls.DYNAMIC_COMBOS.items():
            spec = inputs["required"][name]
            inputs["required"][name] = [provider(paths), *spec[1:]]
        return inputs

    @classmethod
    def object_info(cls, paths: FolderPaths) -> dict[str, Any]:
        """The ``/object_info/{class}`` entry."""
        info = copy.deepcopy(cls.INFO)
        info["input"] = cls.input_types(paths)
        return info

    @classmethod
    def return_types(cls) -> tuple[str, ...]:
        return tuple(cls.INFO["output"])

    @classmethod
    def is_output_node(cls) -> bool:
        return bool(cls.INFO["output_node"])

    @classmethod
    def validate_inputs(cls, paths: FolderPaths, **inputs: Any) -> bool | str:
        """Custom validation; return ``True`` or an error string."""
        return True

    @classmethod
    def fingerprint(cls, paths: FolderPaths, **inputs: Any) -> Any:
        """``IS_CHANGED``: a value that changes when the node must run again."""
        return False

    #: ``async def execute(self, ctx, **inputs) -> NodeOutput`` in every subclass; typed as an
    #: attribute because each node declares its own keyword arguments (ComfyUI's FUNCTION).
    execute: Callable[..., Awaitable[NodeOutput]]


def png_metadata(ctx: NodeContext, prompt: Any, extra_pnginfo: Any) -> PngInfo | None:
    """The PNG text chunks ComfyUI writes (``prompt``, ``extra_pnginfo``), unless metadata is off."""
    if ctx.disable_metadata:
        return None
    metadata = PngInfo()
    if prompt is not None:
        metadata.add_text("prompt", json.dumps(prompt))
    if extra_pnginfo is not None:
        for key in extra_pnginfo:
            metadata.add_text(key, json.dumps(extra_pnginfo[key]))
    return metadata
