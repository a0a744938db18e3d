"""Command-line flags and the settings object built from them.

The worker handler launches ComfyUI with ComfyUI's own flags, so the stand-in accepts the
same ones (``comfy/cli_args.py`` of 0.3.64), including the ones it merely ignores (attention,
precision, VRAM modes). Flags the stand-in does not know are logged and skipped instead of
ending the process, so a newer handler flag never turns into a confusing boot failure in a
test. ``--user-directory`` and ``--front-end-root`` keep ComfyUI's argparse check (the
directory must exist, otherwise exit status 2), because a supervisor must cope with that.

The parsed flags become a :class:`StandinSettings`, read once and passed down.
"""

from __future__ import annotations

import argparse
import enum
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .folders import FolderPaths


class CacheMode(enum.Enum):
    """ComfyUI's output cache strategies (``--cache-classic/--cache-lru/--cache-none``)."""

    CLASSIC = "classic"
    LRU = "lru"
    NONE = "none"


def _existing_directory(path: str) -> str:
    if not Path(path).exists():
        raise argparse.ArgumentTypeError(f"The path '{path}' does not exist.")
    if not Path(path).is_dir():
        raise argparse.ArgumentTypeError(f"'{path}' is not a directory.")
    if not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"You do not have read permissions for '{path}'.")
    return path


def build_parser() -> argparse.ArgumentParser:
    """An argparse parser accepting ComfyUI 0.3.64's flags (names, arities and defaults)."""
    p = argparse.ArgumentParser(prog="main.py", description="ComfyUI stand-in (comfyui_standin)")
    add = p.add_argument
    add("--listen", type=str, default="127.0.0.1", metavar="IP", nargs="?", const="0.0.0.0,::")
    add("--port", type=int, default=8188)
    add("--tls-keyfile", type=str)
    add("--tls-certfile", type=str)
    add("--enable-cors-header", type=str, default=None, metavar="ORIGIN", nargs="?", const="*")
    add("--max-upload-size", type=float, default=100)
    add("--base-directory", type=str, default=None)
    add("--extra-model-paths-config", type=str, default=None, metavar="PATH", nargs="+", action="append")
    add("--output-directory", type=str, default=None)
    add("--temp-directory", type=str, default=None)
    add("--input-directory", type=str, default=None)
    add("--auto-launch", action="store_true")
    add("--disable-auto-launch", action="store_true")
    add("--cuda-device", type=int, default=None)
    add("--default-device", type=int, default=None)
    cm = p.add_mutually_exclusive_group()
    cm.add_argument("--cuda-malloc", action="store_true")
    cm.add_argument("--disable-cuda-malloc", action="store_true")
    for group_flags in (
        ("--force-fp32", "--force-fp16"),
        (
            "--fp32-unet",
            "--fp64-unet",
            "--bf16-unet",
            "--fp16-unet",
            "--fp8_e4m3fn-unet",
            "--fp8_e5m2-unet",
            "--fp8_e8m0fnu-unet",
        ),
        ("--fp16-vae", "--fp32-vae", "--bf16-vae"),
        (
            "--fp8_e4m3fn-text-enc",
            "--fp8_e5m2-text-enc",
            "--fp16-text-enc",
            "--fp32-text-enc",
            "--bf16-text-enc",
        ),
        (
            "--use-split-cross-attention",
            "--use-quad-cross-attention",
            "--use-pytorch-cross-attention",
            "--use-sage-attention",
            "--use-flash-attention",
        ),
        ("--force-upcast-attention", "--dont-upcast-attention"),
        ("--gpu-only", "--highvram", "--normalvram", "--lowvram", "--novram", "--cpu"),
    ):
        group = p.add_mutually_exclusive_group()
        for flag in group_flags:
            group.add_argument(flag, action="store_true")
    for flag in (
        "--cpu-vae",
        "--force-channels-last",
        "--disable-ipex-optimize",
        "--supports-fp8-compute",
        "--disable-xformers",
        "--async-offload",
        "--force-non-blocking",
        "--disable-smart-memory",
        "--deterministic",
        "--mmap-torch-files",
        "--disable-mmap",
        "--dont-print-server",
        "--quick-test-for-ci",
        "--windows-standalone-build",
        "--disable-metadata",
        "--disable-all-custom-nodes",
        "--disable-api-nodes",
        "--multi-user",
        "--log-stdout",
        "--enable-compress-response-body",
    ):
        add(flag, action="store_true")
    add("--directml", type=int, nargs="?", const=-1)
    add("--oneapi-device-selector", type=str, default=None)
    add("--preview-method", type=str, default="none", choices=["none", "auto", "latent2rgb", "taesd"])
    add("--preview-size", type=int, default=512)
    cache = p.add_mutually_exclusive_group()
    cache.add_argument("--cache-classic", action="store_true")
    cache.add_argument("--cache-lru", type=int, default=0)
    cache.add_argument("--cache-none", action="store_true")
    add("--reserve-vram", type=float, default=None)
    add("--default-hashing-function", type=str, choices=["md5", "sha1", "sha256", "sha512"], default="sha256")
    add("--fast", nargs="*", type=str)
    add("--whitelist-custom-nodes", type=str, nargs="+", default=[])
    add(
        "--verbose",
        default="INFO",
        const="DEBUG",
        nargs="?",
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
    )
    add("--front-end-version", type=str, default="comfyanonymous/ComfyUI@latest")
    add("--front-end-root", type=_existing_directory, default=None)
    add("--user-directory", type=_existing_directory, default=None)
    add("--comfy-api-base", type=str, default="https://api.comfy.org")
    add("--database-url", type=str, default=None)
    return p


@dataclass
class StandinSettings:
    """Everything a stand-in instance needs to know, derived once from the flags.

    ``argv`` is what ``/system_stats`` reports; ``unknown_args`` the flags that were skipped.
    """

    paths: FolderPaths
    listen: str = "127.0.0.1"
    port: int = 8188
    argv: list[str] = field(default_factory=lambda: ["main.py"])
    unknown_args: list[str] = field(default_factory=list)
    cache_mode: CacheMode = CacheMode.CLASSIC
    cache_lru_size: int = 0
    disable_metadata: bool = False
    cpu: bool = False
    preview_method: str = "none"
    preview_size: int = 512
    enable_cors_header: str | None = None
    max_upload_size_mb: float = 100
    verbose: str = "INFO"
    log_stdout: bool = False
    dont_print_server: bool = False
    #: ``True`` when running as its own process (``StandinCrash`` may then really exit).
    process_mode: bool = False

    @property
    def max_upload_size_bytes(self) -> int:
        return round(self.max_upload_size_mb * 1024 * 1024)


def settings_from_args(
    args: Sequence[str],
    *,
    comfy_dir: Path,
    argv0: str = "main.py",
    process_mode: bool = False,
) -> StandinSettings:
    """Parse ComfyUI flags into settings, applying paths in ComfyUI's ``main.py`` order.

    ``comfy_dir`` plays the ComfyUI checkout (where ``main.py`` lives): the default base for
    models, input, output and temp, and where ``extra_model_paths.yaml`` is always looked for.
    Exits with status 2 on invalid flags, like argparse does for ComfyUI.
    """
    namespace, unknown = build_parser().parse_known_args(list(args))
    base = Path(namespace.base_directory).absolute() if namespace.base_directory else comfy_dir
    paths = FolderPaths.for_base_dir(base)

    default_yaml = comfy_dir / "extra_model_paths.yaml"
    if default_yaml.is_file():
        paths.load_extra_model_paths(default_yaml)
    for group in namespace.extra_model_paths_config or []:
        for config_path in group:
            paths.load_extra_model_paths(Path(config_path))
    if namespace.output_directory:
        paths.output_dir = Path(namespace.output_directory).absolute()
    paths.add_output_model_folders()
    if namespace.input_directory:
        paths.input_dir = Path(namespace.input_directory).absolute()
    if namespace.user_directory:
        paths.user_dir = Path(namespace.user_directory).absolute()
    if namespace.temp_directory:
        # ComfyUI appends "temp": --temp-directory D means D/temp.
        paths.temp_dir = Path(namespace.temp_directory).absolute() / "temp"

    if namespace.cache_lru > 0:
        cache_mode = CacheMode.LRU
    elif namespace.cache_none:
        cache_mode = CacheMode.NONE
    else:
        cache_mode = CacheMode.CLASSIC

    return StandinSettings(
        paths=paths,
        listen=namespace.listen,
        port=namespace.port,
        argv=[argv0, *args],
        unknown_args=list(unknown),
        cache_mode=cache_mode,
        cache_lru_size=namespace.cache_lru,
        disable_metadata=namespace.disable_metadata,
        cpu=namespace.cpu,
        preview_method=namespace.preview_method,
        preview_size=namespace.preview_size,
        enable_cors_header=namespace.enable_cors_header,
        max_upload_size_mb=namespace.max_upload_size,
        verbose=namespace.verbose,
        log_stdout=namespace.log_stdout,
        dont_print_server=namespace.dont_print_server,
        process_mode=process_mode,
    )
