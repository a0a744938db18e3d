"""The local ComfyUI's command line (``invoke launch``).

Inputs, outputs and models are folders the user chooses, outside the ComfyUI checkout, like on
the worker (``COMFYUI_IO_ROOT``, the network volume); the models folder gets the same layout as
the volume (``comfy_install.models``), so what runs here finds its models there too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from comfy_install.errors import InstallError
from comfy_install.models import extra_model_paths_yaml


@dataclass(frozen=True)
class LaunchOptions:
    """What ``invoke launch`` was asked for; paths already absolute."""

    python: Path
    comfyui: Path
    input_dir: Path
    output_dir: Path
    models: Path | None = None
    model_paths_file: Path | None = None  # where the generated extra_model_paths.yaml goes
    host: str = "127.0.0.1"
    port: int = 8188
    cpu: bool = False
    extra_args: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"


def parse_port(value: str | int) -> int:
    """A TCP port from the command line; InstallError names the bad value."""
    text = str(value).strip()
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise InstallError(f"--port {value!r} is not a port number (1-65535), e.g. --port 8188")
    return int(text)


def local_model_paths(models: Path) -> str:
    """The ``extra_model_paths.yaml`` of a local launch: the volume's layout under ``models``."""
    header = (
        "Written by `invoke launch --models`; regenerated at every launch.\n"
        "The same folders as the worker's network volume (/runpod-volume/comfyui/models)."
    )
    return extra_model_paths_yaml(str(models), header=header)


def launch_command(options: LaunchOptions) -> list[str]:
    """ComfyUI's argv (run with ``cwd=options.comfyui``)."""
    cmd = [str(options.python), "main.py", "--listen", options.host, "--port", str(options.port),
           "--input-directory", str(options.input_dir),
           "--output-directory", str(options.output_dir)]  # fmt: skip
    if options.model_paths_file is not None:
        cmd += ["--extra-model-paths-config", str(options.model_paths_file)]
    if options.cpu:
        cmd.append("--cpu")
    return cmd + list(options.extra_args)


def check_launchable(options: LaunchOptions) -> None:
    """Refuse early, with the fix, what would make ComfyUI fail after seconds of imports."""
    if not (options.comfyui / "main.py").is_file():
        raise InstallError(f"no ComfyUI at {options.comfyui} (no main.py); run `invoke setup` first")
    if not options.python.exists():
        raise InstallError(f"no Python at {options.python}; run `uv sync`, then `invoke setup`")
    if options.models is not None and not options.models.is_dir():
        raise InstallError(f"--models {options.models}: not a folder; create it or point at your models")


def prepare(options: LaunchOptions) -> None:
    """Create the input/output folders and write the models' ``extra_model_paths.yaml``."""
    for folder in (options.input_dir, options.output_dir):
        folder.mkdir(parents=True, exist_ok=True)
    if options.models is not None and options.model_paths_file is not None:
        options.model_paths_file.parent.mkdir(parents=True, exist_ok=True)
        options.model_paths_file.write_text(local_model_paths(options.models), encoding="utf-8")


def split_args(values: Sequence[str]) -> tuple[str, ...]:
    """``--arg "--lowvram --preview-method auto"`` (repeatable) as separate arguments."""
    return tuple(part for value in values for part in value.split())
