"""The node classes the stand-in can execute, and their ``/object_info`` entries.

Two families:

* **Emulated core nodes** (``EmptyImage``, ``SaveImage``, ``LoadImage``, ``KSampler`` ...).
  Their ``/object_info`` entries come verbatim from a real ComfyUI 0.3.64 dump
  (``object_info.json`` next to this file); only the combos that ComfyUI fills from disk
  (input images, checkpoints, LoRAs, VAEs) are recomputed from the stand-in's folders. They
  do real work where a handler can observe it (PNG files with the right pixels, names and
  counters, PIL errors for corrupt inputs) and fake the rest (models are opaque handles,
  sampling is a timed loop that reports ``progress``).

* **Fault-injection nodes** (class names starting ``Standin``, category
  ``standin/testing``). They exist only here, to make the failure modes a worker must
  survive reproducible: slow nodes, hung nodes, process crashes, exceptions, dropped
  websockets, and output nodes whose history keys are not ``images``. They are output nodes
  (a one-node prompt is enough), take an optional ``images`` input that they pass through,
  and the ones that inject faults are never served from the cache (like a node whose
  ``IS_CHANGED`` returns NaN), so a repeated prompt repeats the fault.

A node is a class with a ``CLASS_TYPE``, an ``INFO`` template (the object_info entry) and an
async ``execute(ctx, **inputs)`` returning :class:`NodeOutput`. Inputs arrive exactly as
ComfyUI would pass them (validated literals, upstream outputs, hidden ``prompt`` and
``extra_pnginfo``), so a wrong input name fails with the same ``TypeError`` as in ComfyUI.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import math
import random
import struct
import wave
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NoReturn, Protocol

from PIL import Image, ImageOps, ImageSequence
from PIL.PngImagePlugin import PngInfo

from .folders import FolderPaths

_OBJECT_INFO_PATH = Path(__file__).with_name("object_info.json")
REAL_OBJECT_INFO: dict[str, dict[str, Any]] = json.loads(_OBJECT_INFO_PATH.read_text(encoding="utf-8"))

#: ``python_module`` reported for the fault-injection nodes (custom nodes report their pack).
STANDIN_PYTHON_MODULE = "custom_nodes.comfyui_standin"
STANDIN_CATEGORY = "standin/testing"

#: The stand-in pretends to be a GPU with room for this many output pixels per node: a node
#: asked for more fails with ``torch.OutOfMemoryError`` instead of exhausting the test machine.
MAX_OUTPUT_PIXELS = 64 * 1024 * 1024


class OutOfMemoryError(RuntimeError):
    """Shaped like CUDA's OOM: ComfyUI reports it as ``torch.OutOfMemoryError``."""


OutOfMemoryError.__module__ = "torch"


def _check_vram(pixels: int) -> None:
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
    """The engine services available to a running node (see ``engine.ExecutionContext``)."""

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


def _real(class_type: str) -> dict[str, Any]:
    return REAL_OBJECT_INFO[class_type]


def _digest(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def _color_from(fingerprint: str) -> tuple[int, int, int]:
    raw = bytes.fromhex(fingerprint[:6])
    return raw[0], raw[1], raw[2]


def _png_metadata(ctx: NodeContext, prompt: Any, extra_pnginfo: Any) -> PngInfo | None:
    if ctx.disable_metadata:
        return None
    metadata = PngInfo()
    if prompt is not None:
        metadata.add_text("prompt", json.dumps(prompt))
    if extra_pnginfo is not None:
        for key in extra_pnginfo:
            metadata.add_text(key, json.dumps(extra_pnginfo[key]))
    return metadata


# -- emulated core nodes ------------------------------------------------------------------


class EmptyImage(Node):
    """A batch of solid-colour images (``color`` is 0xRRGGBB)."""

    CLASS_TYPE = "EmptyImage"
    INFO = _real(CLASS_TYPE)

    async def execute(
        self, ctx: NodeContext, width: int, height: int, batch_size: int = 1, color: int = 0
    ) -> NodeOutput:
        _check_vram(width * height * batch_size)
        rgb = ((color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF)
        frame = await asyncio.to_thread(Image.new, "RGB", (width, height), rgb)
        # Nodes never modify images in place, so the batch can share one frame.
        return NodeOutput((ImageBatch((frame,) * batch_size),))


class SaveImage(Node):
    """Writes PNGs ``<prefix>_NNNNN_.png`` into the output dir (or temp, for PreviewImage)."""

    CLASS_TYPE = "SaveImage"
    INFO = _real(CLASS_TYPE)
    folder_type = "output"
    prefix_append = ""
    compress_level = 4

    def _directory(self, ctx: NodeContext) -> Path:
        return ctx.paths.output_dir

    async def execute(
        self,
        ctx: NodeContext,
        images: ImageBatch,
        filename_prefix: str = "ComfyUI",
        prompt: Any = None,
        extra_pnginfo: Any = None,
    ) -> NodeOutput:
        filename_prefix += self.prefix_append
        folder, filename, counter, subfolder, _ = ctx.paths.get_save_image_path(
            filename_prefix, self._directory(ctx), images.width, images.height
        )
        metadata = _png_metadata(ctx, prompt, extra_pnginfo)
        results = []
        for batch_number, frame in enumerate(images.frames):
            name = f"{filename.replace('%batch_num%', str(batch_number))}_{counter:05}_.png"
            await asyncio.to_thread(
                frame.save, folder / name, pnginfo=metadata, compress_level=self.compress_level
            )
            results.append({"filename": name, "subfolder": subfolder, "type": self.folder_type})
            counter += 1
        return NodeOutput((), {"images": results})


class PreviewImage(SaveImage):
    """Like SaveImage, into the temp dir, with a random ``_temp_xxxxx`` prefix per instance."""

    CLASS_TYPE = "PreviewImage"
    INFO = _real(CLASS_TYPE)
    folder_type = "temp"
    compress_level = 1

    def __init__(self) -> None:
        # ComfyUI's alphabet really has 'p' twice and no 'w' ("...rstupvxyz").
        letters = "abcdefghijklmnopqrstupvxyz"
        self.prefix_append = "_temp_" + "".join(random.choice(letters) for _ in range(5))  # noqa: S311

    def _directory(self, ctx: NodeContext) -> Path:
        return ctx.paths.temp_dir


class LoadImage(Node):
    """Loads ``input/<value>``; the value may name a subfolder or carry ``[output]`` etc.

    Validation only checks that the file exists (so subfolder paths are accepted although
    the combo lists only top-level files); a corrupt file fails at run time with
    ``PIL.UnidentifiedImageError``, exactly like ComfyUI.
    """

    CLASS_TYPE = "LoadImage"
    INFO = _real(CLASS_TYPE)
    DYNAMIC_COMBOS = {"image": FolderPaths.input_image_files}
    VALIDATE_INPUTS_ARGS = ("image",)
    HAS_FINGERPRINT = True

    @classmethod
    def validate_inputs(cls, paths: FolderPaths, **inputs: Any) -> bool | str:
        image = inputs.get("image")
        if not paths.exists_annotated_filepath(str(image)):
            return f"Invalid image file: {image}"
        return True

    @classmethod
    def fingerprint(cls, paths: FolderPaths, **inputs: Any) -> Any:
        path = Path(paths.get_annotated_filepath(str(inputs.get("image"))))
        return hashlib.sha256(path.read_bytes()).hexdigest()

    async def execute(self, ctx: NodeContext, image: str) -> NodeOutput:
        path = ctx.paths.get_annotated_filepath(image)
        return await asyncio.to_thread(self._load, path)

    @staticmethod
    def _load(path: str) -> NodeOutput:
        # A str path, so that PIL's error message quotes it like ComfyUI's does.
        with Image.open(path) as opened:
            return LoadImage._frames(opened)

    @staticmethod
    def _frames(opened: Image.Image) -> NodeOutput:
        frames: list[Image.Image] = []
        masks: list[Image.Image] = []
        for raw in ImageSequence.Iterator(opened):
            frame = ImageOps.exif_transpose(raw)
            if frame.mode == "I":
                frame = frame.point(lambda v: v * (1 / 255))
            rgb = frame.convert("RGB")
            if frames and rgb.size != frames[0].size:
                continue
            if "A" in frame.getbands():
                mask = ImageOps.invert(frame.getchannel("A"))
            elif frame.mode == "P" and "transparency" in frame.info:
                mask = ImageOps.invert(frame.convert("RGBA").getchannel("A"))
            else:
                mask = Image.new("L", (64, 64), 0)
            frames.append(rgb)
            masks.append(mask)
        if opened.format == "MPO":
            frames, masks = frames[:1], masks[:1]
        return NodeOutput((ImageBatch(tuple(frames)), MaskBatch(tuple(masks))))


class ImageInvert(Node):
    """Inverts every pixel (255 - value per channel)."""

    CLASS_TYPE = "ImageInvert"
    INFO = _real(CLASS_TYPE)

    async def execute(self, ctx: NodeContext, image: ImageBatch) -> NodeOutput:
        frames = await asyncio.to_thread(lambda: tuple(ImageOps.invert(f) for f in image.frames))
        return NodeOutput((ImageBatch(frames),))


class ImageScaleBy(Node):
    """Resizes by a factor, taking simulated CPU time: ~1 s per 16 megapixels of output.

    Like a real CPU upscale it cannot be interrupted midway: an interrupt that arrives
    while it runs is noticed when it finishes and is reported against this node (which is
    what the captured ``execution_interrupted`` shows).
    """

    CLASS_TYPE = "ImageScaleBy"
    INFO = _real(CLASS_TYPE)
    MEGAPIXELS_PER_SECOND: ClassVar[float] = 16.0
    _METHODS: ClassVar[dict[str, Image.Resampling]] = {
        "nearest-exact": Image.Resampling.NEAREST,
        "bilinear": Image.Resampling.BILINEAR,
        "area": Image.Resampling.BOX,
        "bicubic": Image.Resampling.BICUBIC,
        "lanczos": Image.Resampling.LANCZOS,
    }

    async def execute(
        self, ctx: NodeContext, image: ImageBatch, upscale_method: str, scale_by: float
    ) -> NodeOutput:
        width = round(image.width * scale_by)
        height = round(image.height * scale_by)
        pixels = width * height * len(image.frames)
        _check_vram(pixels)
        await ctx.sleep(pixels / 1e6 / self.MEGAPIXELS_PER_SECOND, interruptible=False)
        ctx.check_interrupt()
        method = self._METHODS[upscale_method]
        size = (max(width, 1), max(height, 1))
        frames = await asyncio.to_thread(lambda: tuple(f.resize(size, method) for f in image.frames))
        return NodeOutput((ImageBatch(frames),))


class CheckpointLoaderSimple(Node):
    """Returns MODEL/CLIP/VAE handles for a file in the ``checkpoints`` folders."""

    CLASS_TYPE = "CheckpointLoaderSimple"
    INFO = _real(CLASS_TYPE)
    DYNAMIC_COMBOS = {"ckpt_name": lambda paths: paths.get_filename_list("checkpoints")}

    async def execute(self, ctx: NodeContext, ckpt_name: str) -> NodeOutput:
        ctx.paths.get_full_path_or_raise("checkpoints", ckpt_name)
        return NodeOutput(tuple(ModelHandle(kind, ckpt_name) for kind in ("MODEL", "CLIP", "VAE")))


class LoraLoader(Node):
    """Adds a LoRA (by name and strengths) to the MODEL and CLIP handles."""

    CLASS_TYPE = "LoraLoader"
    INFO = _real(CLASS_TYPE)
    DYNAMIC_COMBOS = {"lora_name": lambda paths: paths.get_filename_list("loras")}

    async def execute(
        self,
        ctx: NodeContext,
        model: ModelHandle,
        clip: ModelHandle,
        lora_name: str,
        strength_model: float,
        strength_clip: float,
    ) -> NodeOutput:
        if strength_model == 0 and strength_clip == 0:
            return NodeOutput((model, clip))
        ctx.paths.get_full_path_or_raise("loras", lora_name)
        return NodeOutput(
            (
                ModelHandle(model.kind, model.source, (*model.loras, (lora_name, strength_model))),
                ModelHandle(clip.kind, clip.source, (*clip.loras, (lora_name, strength_clip))),
            )
        )


def _vae_options(paths: FolderPaths) -> list[str]:
    vaes = paths.get_filename_list("vae")
    approx = paths.get_filename_list("vae_approx")
    pairs = {
        "taesd": ("taesd_encoder.", "taesd_decoder."),
        "taesdxl": ("taesdxl_encoder.", "taesdxl_decoder."),
        "taesd3": ("taesd3_encoder.", "taesd3_decoder."),
        "taef1": ("taef1_encoder.", "taef1_decoder."),
    }
    for name, (enc, dec) in pairs.items():
        if any(a.startswith(enc) for a in approx) and any(a.startswith(dec) for a in approx):
            vaes.append(name)
    vaes.append("pixel_space")
    return vaes


class VAELoader(Node):
    """Returns a VAE handle (``pixel_space`` and TAESD names need no file in ``vae``)."""

    CLASS_TYPE = "VAELoader"
    INFO = _real(CLASS_TYPE)
    DYNAMIC_COMBOS = {"vae_name": _vae_options}

    async def execute(self, ctx: NodeContext, vae_name: str) -> NodeOutput:
        if vae_name not in ("pixel_space", "taesd", "taesdxl", "taesd3", "taef1"):
            ctx.paths.get_full_path_or_raise("vae", vae_name)
        return NodeOutput((ModelHandle("VAE", vae_name),))


class CLIPTextEncode(Node):
    """Keeps the text as the CONDITIONING, so sampler outputs can depend on it."""

    CLASS_TYPE = "CLIPTextEncode"
    INFO = _real(CLASS_TYPE)

    async def execute(self, ctx: NodeContext, text: str, clip: ModelHandle | None) -> NodeOutput:
        if clip is None:
            raise RuntimeError(
                "ERROR: clip input is invalid: None\n\nIf the clip is from a "
                "checkpoint loader node your checkpoint does not contain a valid "
                "clip or text encoder model."
            )
        return NodeOutput((Conditioning(text, clip),))


class EmptyLatentImage(Node):
    """A LATENT of width/8 x height/8."""

    CLASS_TYPE = "EmptyLatentImage"
    INFO = _real(CLASS_TYPE)

    async def execute(self, ctx: NodeContext, width: int, height: int, batch_size: int = 1) -> NodeOutput:
        return NodeOutput(({"samples": LatentSamples(batch_size, height // 8, width // 8)},))


class KSampler(Node):
    """A timed loop: ~5 ms per step, one ``progress`` event per step, interruptible.

    With ``--preview-method`` other than ``none`` each step also sends a small preview image
    (binary frame type 1, or type 4 to clients that announced ``supports_preview_metadata``).
    The resulting latent's fingerprint covers seed, prompts, model and LoRAs.
    """

    CLASS_TYPE = "KSampler"
    INFO = _real(CLASS_TYPE)
    SECONDS_PER_STEP: ClassVar[float] = 0.005

    async def execute(
        self,
        ctx: NodeContext,
        model: ModelHandle,
        seed: int,
        steps: int,
        cfg: float,
        sampler_name: str,
        scheduler: str,
        positive: Conditioning,
        negative: Conditioning,
        latent_image: dict[str, Any],
        denoise: float = 1.0,
    ) -> NodeOutput:
        samples: LatentSamples = latent_image["samples"]
        fingerprint = _digest(
            seed,
            steps,
            cfg,
            sampler_name,
            scheduler,
            denoise,
            str(model),
            model.loras,
            positive.text,
            negative.text,
            samples.fingerprint,
        )
        preview_color = _color_from(fingerprint)
        for step in range(steps):
            await asyncio.sleep(self.SECONDS_PER_STEP)
            preview = None
            if ctx.preview_method != "none":
                preview = Image.new("RGB", (max(samples.width, 1), max(samples.height, 1)), preview_color)
            await ctx.progress(step + 1, steps, preview)
        out = LatentSamples(samples.batch, samples.height, samples.width, fingerprint)
        return NodeOutput(({**latent_image, "samples": out},))


class VAEDecode(Node):
    """Turns a LATENT into 8x larger images whose colour derives from the latent's history."""

    CLASS_TYPE = "VAEDecode"
    INFO = _real(CLASS_TYPE)

    async def execute(self, ctx: NodeContext, samples: dict[str, Any], vae: ModelHandle) -> NodeOutput:
        latent: LatentSamples = samples["samples"]
        size = (max(latent.width * 8, 1), max(latent.height * 8, 1))
        _check_vram(size[0] * size[1] * latent.batch)
        color = _color_from(_digest(latent.fingerprint, vae.source))
        frame = await asyncio.to_thread(Image.new, "RGB", size, color)
        return NodeOutput((ImageBatch((frame,) * latent.batch),))


class PreviewAny(Node):
    """Shows any value as text; history output ``{"text": [value]}``."""

    CLASS_TYPE = "PreviewAny"
    INFO = _real(CLASS_TYPE)

    async def execute(self, ctx: NodeContext, source: Any = None) -> NodeOutput:
        value = "None"
        if isinstance(source, str):
            value = source
        elif isinstance(source, (int, float, bool)):
            value = str(source)
        elif source is not None:
            try:
                value = json.dumps(source)
            except (TypeError, ValueError):
                value = str(source)
        return NodeOutput((), {"text": [value]})


class SaveAnimatedWEBP(Node):
    """Writes one (animated) WEBP; history adds ``animated: [frames != 1]``."""

    CLASS_TYPE = "SaveAnimatedWEBP"
    INFO = _real(CLASS_TYPE)
    _METHODS: ClassVar[dict[str, int]] = {"default": 4, "fastest": 0, "slowest": 6}

    async def execute(
        self,
        ctx: NodeContext,
        images: ImageBatch,
        fps: float,
        filename_prefix: str,
        lossless: bool,
        quality: int,
        method: str,
        num_frames: int = 0,
        prompt: Any = None,
        extra_pnginfo: Any = None,
    ) -> NodeOutput:
        folder, filename, counter, subfolder, _ = ctx.paths.get_save_image_path(
            filename_prefix, ctx.paths.output_dir, images.width, images.height
        )
        frames = list(images.frames)
        exif = frames[0].getexif()
        if not ctx.disable_metadata:
            if prompt is not None:
                exif[0x0110] = f"prompt:{json.dumps(prompt)}"
            if extra_pnginfo is not None:
                tag = 0x010F
                for key in extra_pnginfo:
                    exif[tag] = f"{key}:{json.dumps(extra_pnginfo[key])}"
                    tag -= 1
        if num_frames == 0:
            num_frames = len(frames)
        results = []
        for start in range(0, len(frames), num_frames):
            name = f"{filename}_{counter:05}_.webp"
            await asyncio.to_thread(
                frames[start].save,
                folder / name,
                format="WEBP",
                save_all=True,
                duration=int(1000.0 / fps),
                append_images=frames[start + 1 : start + num_frames],
                exif=exif,
                lossless=lossless,
                quality=quality,
                method=self._METHODS[method],
            )
            results.append({"filename": name, "subfolder": subfolder, "type": "output"})
            counter += 1
        return NodeOutput((), {"images": results, "animated": [num_frames != 1]})


# -- fault-injection nodes ----------------------------------------------------------------


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
            folder / workflow_png, pnginfo=_png_metadata(ctx, prompt, extra_pnginfo), compress_level=4
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


# -- registry -----------------------------------------------------------------------------

#: Emulated core nodes, in the order of the real ``/object_info``.
CORE_NODES: tuple[type[Node], ...] = tuple(
    cls
    for name in REAL_OBJECT_INFO
    for cls in (
        EmptyImage,
        SaveImage,
        PreviewImage,
        LoadImage,
        ImageInvert,
        ImageScaleBy,
        CheckpointLoaderSimple,
        LoraLoader,
        VAELoader,
        CLIPTextEncode,
        EmptyLatentImage,
        KSampler,
        VAEDecode,
        PreviewAny,
        SaveAnimatedWEBP,
    )
    if name == cls.CLASS_TYPE
)

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

NODE_CLASSES: dict[str, type[Node]] = {cls.CLASS_TYPE: cls for cls in (*CORE_NODES, *STANDIN_NODES)}


@dataclass
class NodeRegistry:
    """The node classes one stand-in offers (tests may register extra classes)."""

    classes: dict[str, type[Node]] = field(default_factory=lambda: dict(NODE_CLASSES))

    def get(self, class_type: str) -> type[Node] | None:
        return self.classes.get(class_type)

    def object_info(self, paths: FolderPaths) -> dict[str, Any]:
        return {name: cls.object_info(paths) for name, cls in self.classes.items()}
