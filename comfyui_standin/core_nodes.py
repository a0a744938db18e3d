"""The emulated core nodes (``EmptyImage``, ``SaveImage``, ``LoadImage``, ``KSampler`` ...).

Their ``/object_info`` entries come verbatim from a real ComfyUI 0.3.64 dump
(``object_info.json``); only the combos that ComfyUI fills from disk (input images,
checkpoints, LoRAs, VAEs) are recomputed from the stand-in's folders. They do real work where
a handler can observe it (PNG files with the right pixels, names and counters, PIL errors for
corrupt inputs) and fake the rest (models are opaque handles, sampling is a timed loop that
reports ``progress``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from pathlib import Path
from typing import Any, ClassVar

from PIL import Image, ImageOps, ImageSequence

from .folders import FolderPaths
from .nodes import (
    REAL_OBJECT_INFO,
    Conditioning,
    ImageBatch,
    LatentSamples,
    MaskBatch,
    ModelHandle,
    Node,
    NodeContext,
    NodeOutput,
    check_vram,
    png_metadata,
)


def _real(class_type: str) -> dict[str, Any]:
    return REAL_OBJECT_INFO[class_type]


def _digest(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def _color_from(fingerprint: str) -> tuple[int, int, int]:
    raw = bytes.fromhex(fingerprint[:6])
    return raw[0], raw[1], raw[2]


class EmptyImage(Node):
    """A batch of solid-colour images (``color`` is 0xRRGGBB)."""

    CLASS_TYPE = "EmptyImage"
    INFO = _real(CLASS_TYPE)

    async def execute(
        self, ctx: NodeContext, width: int, height: int, batch_size: int = 1, color: int = 0
    ) -> NodeOutput:
        check_vram(width * height * batch_size)
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
        metadata = png_metadata(ctx, prompt, extra_pnginfo)
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
        check_vram(pixels)
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
        check_vram(size[0] * size[1] * latent.batch)
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
