"""The fault-injection nodes: class names starting ``Standin``, category ``standin/testing``.

They exist only in the stand-in, to make the failure modes a worker must survive
reproducible: slow nodes, hung nodes, process crashes, exceptions, dropped websockets, and
output nodes whose history keys are not ``images``. They are output nodes (a one-node prompt
is enough), take an optional ``images`` input that they pass through, and the ones that
inject faults are never served from the cache (like a node whose ``IS_CHANGED`` returns NaN),
so a repeated prompt repeats the fault.
"""

from __future__ import annotations

import asyncio
import math
import struct
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from PIL import Image

from .folders import FolderPaths
from .nodes import ImageBatch, Node, NodeContext, NodeOutput, OutOfMemoryError, png_metadata

#: ``python_module`` reported for the fault-injection nodes (custom nodes report their pack).
STANDIN_PYTHON_MODULE = "custom_nodes.comfyui_standin"
STANDIN_CATEGORY = "standin/testing"


def _standin_info(
    name: str,
    display_name: str,
    description: str,
    required: dict[str, Any],
    optional: dict[str, Any] | None = None,
    output: tuple[str, ...] = ("IMAGE",),
    output_name: tuple[str, ...] | None = None,
    hidden: dict[str, str] | None = None,
) -> dict[str, Any]:
    inputs: dict[str, Any] = {"required": required}
    if optional:
        inputs["optional"] = optional
    if hidden:
        inputs["hidden"] = hidden
    return {
        "input": inputs,
        "input_order": {key: list(value) for key, value in inputs.items()},
        "output": list(output),
        "output_is_list": [False] * len(output),
        "output_name": list(output_name or output),
        "name": name,
        "display_name": display_name,
        "description": description,
        "python_module": STANDIN_PYTHON_MODULE,
        "category": STANDIN_CATEGORY,
        "output_node": True,
    }


_PASSTHROUGH = {"images": ["IMAGE", {"tooltip": "Optional; returned unchanged."}]}


def _passthrough(images: ImageBatch | None) -> ImageBatch:
    if images is not None:
        return images
    return ImageBatch((Image.new("RGB", (8, 8), (0, 0, 0)),))


class _UncachedStandin(Node):
    """Fault nodes run every time: their fingerprint is NaN, which never equals itself."""

    HAS_FINGERPRINT = True

    @classmethod
    def fingerprint(cls, paths: FolderPaths, **inputs: Any) -> Any:
        return float("nan")


class StandinSleep(_UncachedStandin):
    """Waits ``seconds``, reporting progress and checking for interrupts every ~10 ms."""

    CLASS_TYPE = "StandinSleep"
    INFO = _standin_info(
        CLASS_TYPE,
        "Stand-in: Sleep",
        "Fault injection (stand-in only): waits `seconds`, sending a progress event and "
        "checking for interrupts about every 10 ms, then passes `images` through.",
        {
            "seconds": [
                "FLOAT",
                {"default": 1.0, "min": 0.0, "max": 86400.0, "step": 0.01, "tooltip": "How long to wait."},
            ]
        },
        _PASSTHROUGH,
    )

    async def execute(self, ctx: NodeContext, seconds: float, images: ImageBatch | None = None) -> NodeOutput:
        ctx.send_text(f"sleeping {seconds:g} s")
        await ctx.sleep(seconds, tick=0.01, report_progress=True)
        return NodeOutput((_passthrough(images),))


class StandinHang(_UncachedStandin):
    """Never finishes and ignores interrupts, like a stuck CUDA kernel.

    The HTTP server stays responsive (``/queue`` shows the prompt running); only killing the
    process (or stopping an in-process stand-in) ends it.
    """

    CLASS_TYPE = "StandinHang"
    INFO = _standin_info(
        CLASS_TYPE,
        "Stand-in: Hang",
        "Fault injection (stand-in only): never finishes and ignores /interrupt, like a "
        "stuck GPU kernel. Only killing the process ends it.",
        {},
        _PASSTHROUGH,
    )

    async def execute(self, ctx: NodeContext, images: ImageBatch | None = None) -> NodeOutput:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")  # pragma: no cover


class StandinCrash(_UncachedStandin):
    """Ends the ComfyUI process mid-execution (exit code or signal), after a fake traceback.

    In-process stand-ins cannot do that without killing the test run, so there the node fails
    with a ``RuntimeError`` saying it needs process mode.
    """

    CLASS_TYPE = "StandinCrash"
    SIGNALS: ClassVar[list[str]] = ["none", "SIGKILL", "SIGSEGV", "SIGABRT"]
    INFO = _standin_info(
        CLASS_TYPE,
        "Stand-in: Crash process",
        "Fault injection (stand-in only): after `after_seconds`, prints a fake CUDA "
        "traceback to the log (stderr) and ends the process with `exit_code`, or kills itself with "
        "`signal`. In-process stand-ins raise RuntimeError instead.",
        {
            "exit_code": [
                "INT",
                {"default": 1, "min": 0, "max": 255, "tooltip": "Exit status of the process."},
            ],
            "signal": [SIGNALS, {"tooltip": "Kill the process with this signal instead."}],
        },
        {
            "after_seconds": [
                "FLOAT",
                {
                    "default": 0.0,
                    "min": 0.0,
                    "max": 3600.0,
                    "step": 0.01,
                    "tooltip": "Wait this long (uninterruptible) first.",
                },
            ],
            **_PASSTHROUGH,
        },
    )

    async def execute(
        self,
        ctx: NodeContext,
        exit_code: int,
        signal: str,
        after_seconds: float = 0.0,
        images: ImageBatch | None = None,
    ) -> NodeOutput:
        if after_seconds > 0:
            await ctx.sleep(after_seconds, interruptible=False)
        ctx.crash(exit_code, signal)


class StandinRaise(_UncachedStandin):
    """Raises ``exception_type(message)``, giving an ``execution_error`` with a traceback.

    ``torch.OutOfMemoryError`` gets ComfyUI's OOM tips appended to ``exception_message``.
    """

    CLASS_TYPE = "StandinRaise"
    EXCEPTIONS: ClassVar[dict[str, Callable[[], type[Exception]]]] = {
        "RuntimeError": lambda: RuntimeError,
        "ValueError": lambda: ValueError,
        "KeyError": lambda: KeyError,
        "FileNotFoundError": lambda: FileNotFoundError,
        "torch.OutOfMemoryError": lambda: OutOfMemoryError,
    }
    INFO = _standin_info(
        CLASS_TYPE,
        "Stand-in: Raise exception",
        "Fault injection (stand-in only): raises `exception_type(message)` so the prompt ends "
        "with execution_error.",
        {
            "message": [
                "STRING",
                {"default": "Stand-in failure", "multiline": False, "tooltip": "The exception message."},
            ],
            "exception_type": [list(EXCEPTIONS), {"tooltip": "The exception class."}],
        },
        _PASSTHROUGH,
    )

    async def execute(
        self, ctx: NodeContext, message: str, exception_type: str, images: ImageBatch | None = None
    ) -> NodeOutput:
        raise self.EXCEPTIONS[exception_type]()(message)


class StandinDropWebsockets(_UncachedStandin):
    """Closes every websocket, then carries on: events sent meanwhile are lost to clients.

    ``abort`` drops the TCP connection without a close frame (what a proxy or network fault
    looks like); ``close`` sends a normal close frame with code 1001 ("going away").
    """

    CLASS_TYPE = "StandinDropWebsockets"
    INFO = _standin_info(
        CLASS_TYPE,
        "Stand-in: Drop websockets",
        "Fault injection (stand-in only): closes every websocket connection (abort = drop TCP, "
        "close = close frame), waits `then_sleep` seconds and passes `images` through.",
        {"mode": [["abort", "close"], {"tooltip": "How to end the connections."}]},
        {
            "then_sleep": [
                "FLOAT",
                {
                    "default": 0.0,
                    "min": 0.0,
                    "max": 3600.0,
                    "step": 0.01,
                    "tooltip": "Keep running this long afterwards.",
                },
            ],
            **_PASSTHROUGH,
        },
    )

    async def execute(
        self, ctx: NodeContext, mode: str, then_sleep: float = 0.0, images: ImageBatch | None = None
    ) -> NodeOutput:
        await ctx.drop_websockets(graceful=mode == "close")
        if then_sleep > 0:
            await ctx.sleep(then_sleep, report_progress=True)
        return NodeOutput((_passthrough(images),))


def _vhs_counter(folder: Path, filename: str) -> int:
    """VideoHelperSuite numbering: one past the highest ``<name>_NNNNN<anything>.<ext>``."""
    highest = 0
    lowered = filename.lower()
    for existing in folder.iterdir():
        name = existing.name
        if not name.lower().startswith(lowered + "_"):
            continue
        digits = ""
        for char in name[len(filename) + 1 :]:
            if not char.isdigit():
                break
            digits += char
        if digits and "." in name[len(filename) + 1 + len(digits) :]:
            highest = max(highest, int(digits))
    return highest + 1


class StandinVideoCombine(Node):
    """Writes a video like VideoHelperSuite's ``VHS_VideoCombine``; history key ``gifs``.

    Each ``gifs`` entry carries ``filename``/``subfolder``/``type`` plus ``format``,
    ``frame_rate``, ``workflow`` (a PNG of the first frame saved next to it) and ``fullpath``.
    GIF and WEBP are real animations; ``video/h264-mp4`` is a small MP4-shaped placeholder
    (``ftyp`` + ``mdat`` boxes), since encoding H.264 would need ffmpeg.
    """

    CLASS_TYPE = "StandinVideoCombine"
    FORMATS: ClassVar[dict[str, str]] = {"image/gif": "gif", "image/webp": "webp", "video/h264-mp4": "mp4"}
    INFO = _standin_info(
        CLASS_TYPE,
        "Stand-in: Video Combine",
        "Stand-in output node shaped like VideoHelperSuite's Video Combine: writes a video "
        "file and reports it under the history key `gifs` (with format, frame_rate, workflow "
        "and fullpath).",
        {
            "images": ["IMAGE"],
            "frame_rate": ["FLOAT", {"default": 8, "min": 1, "step": 1}],
            "filename_prefix": ["STRING", {"default": "AnimateDiff"}],
            "format": [list(FORMATS)],
            "save_output": ["BOOLEAN", {"default": True}],
        },
        output=("VHS_FILENAMES",),
        output_name=("Filenames",),
        hidden={"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
    )

    async def execute(
        self,
        ctx: NodeContext,
        images: ImageBatch,
        frame_rate: float,
        filename_prefix: str,
        format: str,
        save_output: bool = True,
        prompt: Any = None,
        extra_pnginfo: Any = None,
    ) -> NodeOutput:
        base_dir = ctx.paths.output_dir if save_output else ctx.paths.temp_dir
        folder, filename, _, subfolder, _ = ctx.paths.get_save_image_path(
            filename_prefix, base_dir, images.width, images.height
        )
        counter = _vhs_counter(folder, filename)
        workflow_png = f"{filename}_{counter:05}.png"
        images.frames[0].save(
            folder / workflow_png, pnginfo=png_metadata(ctx, prompt, extra_pnginfo), compress_level=4
        )
        extension = self.FORMATS[format]
        video = f"{filename}_{counter:05}.{extension}"
        target = folder / video
        frames = list(images.frames)
        duration = int(1000 / frame_rate)
        if extension == "gif":
            frames[0].save(target, save_all=True, append_images=frames[1:], duration=duration, loop=0)
        elif extension == "webp":
            frames[0].save(target, save_all=True, append_images=frames[1:], duration=duration, lossless=True)
        else:
            payload = b"standin-h264-placeholder" + struct.pack(">IId", len(frames), images.width, frame_rate)
            ftyp = struct.pack(">I4s4sI", 24, b"ftyp", b"isom", 0x200) + b"isomiso2"
            target.write_bytes(ftyp + struct.pack(">I4s", 8 + len(payload), b"mdat") + payload)
        entry = {
            "filename": video,
            "subfolder": subfolder,
            "type": "output" if save_output else "temp",
            "format": format,
            "frame_rate": frame_rate,
            "workflow": workflow_png,
            "fullpath": str(target),
        }
        return NodeOutput(((save_output, [str(folder / workflow_png), str(target)]),), {"gifs": [entry]})


class StandinSaveAudio(Node):
    """Writes a short sine-wave WAV like core ``SaveAudio``; history key ``audio``."""

    CLASS_TYPE = "StandinSaveAudio"
    INFO = _standin_info(
        CLASS_TYPE,
        "Stand-in: Save Audio",
        "Stand-in output node: writes a short 440 Hz WAV file and reports it under the "
        "history key `audio`, like core SaveAudio.",
        {
            "filename_prefix": ["STRING", {"default": "audio/ComfyUI"}],
            "seconds": ["FLOAT", {"default": 0.25, "min": 0.01, "max": 60.0, "step": 0.01}],
        },
        output=(),
    )

    async def execute(self, ctx: NodeContext, filename_prefix: str, seconds: float) -> NodeOutput:
        folder, filename, counter, subfolder, _ = ctx.paths.get_save_image_path(
            filename_prefix, ctx.paths.output_dir
        )
        name = f"{filename}_{counter:05}_.wav"
        rate = 16000
        count = max(1, int(rate * seconds))
        samples = b"".join(
            struct.pack("<h", int(12000 * math.sin(2 * math.pi * 440 * i / rate))) for i in range(count)
        )
        with wave.open(str(folder / name), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(rate)
            out.writeframes(samples)
        return NodeOutput((), {"audio": [{"filename": name, "subfolder": subfolder, "type": "output"}]})


class StandinSaveText(Node):
    """Writes a ``.txt`` file; history key ``text_files`` (a custom, non-standard key)."""

    CLASS_TYPE = "StandinSaveText"
    INFO = _standin_info(
        CLASS_TYPE,
        "Stand-in: Save Text",
        "Stand-in output node: writes `text` to a .txt file and reports it under the custom "
        "history key `text_files`, to check that a worker collects every key listing files.",
        {
            "text": ["STRING", {"default": "hello", "multiline": True}],
            "filename_prefix": ["STRING", {"default": "text/ComfyUI"}],
        },
        output=(),
    )

    async def execute(self, ctx: NodeContext, text: str, filename_prefix: str) -> NodeOutput:
        folder, filename, counter, subfolder, _ = ctx.paths.get_save_image_path(
            filename_prefix, ctx.paths.output_dir
        )
        name = f"{filename}_{counter:05}_.txt"
        (folder / name).write_text(text, encoding="utf-8")
        return NodeOutput((), {"text_files": [{"filename": name, "subfolder": subfolder, "type": "output"}]})


#: Fault-injection and custom-output nodes that exist only in the stand-in.
STANDIN_NODES: tuple[type[Node], ...] = (
    StandinSleep,
    StandinHang,
    StandinCrash,
    StandinRaise,
    StandinDropWebsockets,
    StandinVideoCombine,
    StandinSaveAudio,
    StandinSaveText,
)
