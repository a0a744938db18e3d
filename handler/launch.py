"""How ComfyUI is launched: its command line from the environment, and the spawn itself.

Kept to ``os`` and ``subprocess`` on purpose: ``handler/handler.py`` imports this first and
spawns ComfyUI a few tens of milliseconds after the worker process starts, before the
settings, logging and ``runpod`` imports, which then overlap ComfyUI's boot.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping

# Defaults of the worker image (see image/); each is overridden by the env var named beside it.
IMAGE_COMFYUI_DIR = "/opt/comfyui"  # COMFYUI_DIR
IMAGE_IO_ROOT = "/comfy-io"  # COMFYUI_IO_ROOT: parent of input/, output/, temp/
IMAGE_EXTRA_MODEL_PATHS = "/opt/comfy-runpod/extra_model_paths.yaml"  # COMFYUI_EXTRA_MODEL_PATHS


# What ComfyUI inherits from the worker's environment: an allow list, so custom node packs
# never see the RunPod key, bucket credentials or template secrets. COMFYUI_ENV_PASSTHROUGH
# adds names (``HF_TOKEN``) or prefixes (``MYPACK_*``) that a pack really needs.
CHILD_ENV_NAMES = frozenset(
    {
        "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "LANG", "LANGUAGE", "TZ",
        "TMPDIR", "TEMP", "TMP", "VIRTUAL_ENV", "LD_LIBRARY_PATH",
        "PYTHONPATH", "PYTHONHOME", "PYTHONIOENCODING", "PYTHONDONTWRITEBYTECODE",
        "PYTHONHASHSEED", "PYTHONWARNINGS", "PYTHONFAULTHANDLER",
        "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
        "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
        "HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_HUB_ENABLE_HF_TRANSFER",
        "TRANSFORMERS_CACHE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY",
        "TOKENIZERS_PARALLELISM", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
    }
)  # fmt: skip
CHILD_ENV_PREFIXES = ("LC_", "XDG_", "CUDA_", "NVIDIA_", "NCCL_", "CUDNN_", "PYTORCH_", "TORCH_",
                      "TORCHINDUCTOR_", "TRITON_", "XFORMERS_")  # fmt: skip
PASSTHROUGH_ENV = "COMFYUI_ENV_PASSTHROUGH"


def child_environment(source: Mapping[str, str], passthrough: tuple[str, ...] = ()) -> dict[str, str]:
    """The variables of ``source`` that ComfyUI may see: the allow list plus ``passthrough``.

    ``passthrough`` holds names, or prefixes ending in ``*``.
    """
    names = CHILD_ENV_NAMES | {p for p in passthrough if not p.endswith("*")}
    prefixes = CHILD_ENV_PREFIXES + tuple(p[:-1] for p in passthrough if p.endswith("*") and len(p) > 1)
    return {k: v for k, v in source.items() if k in names or k.startswith(prefixes)}


class LaunchError(ValueError):
    """An environment variable that shapes ComfyUI's command line is unusable."""


class LaunchSpec:
    """ComfyUI's launch parameters, from the environment (spawn mode only)."""

    __slots__ = (
        "comfyui_dir",
        "extra_args",
        "extra_model_paths",
        "host",
        "input_dir",
        "output_dir",
        "passthrough",
        "port",
        "python",
        "temp_dir",
    )  # fmt: skip

    def __init__(self, env: Mapping[str, str], *, attach: bool) -> None:
        def value(name: str, default: str | None) -> str | None:
            raw = env.get(name, "").strip()
            return raw or default

        io_root = value("COMFYUI_IO_ROOT", IMAGE_IO_ROOT) or IMAGE_IO_ROOT
        # Spawn mode owns ComfyUI's directories, so it always knows them; in attach mode they
        # are known only when given.
        self.comfyui_dir = value("COMFYUI_DIR", IMAGE_COMFYUI_DIR) or IMAGE_COMFYUI_DIR
        self.python = value("COMFYUI_PYTHON", sys.executable) or sys.executable
        self.host = value("COMFYUI_HOST", "127.0.0.1") or "127.0.0.1"
        raw_port = value("COMFYUI_PORT", "8188") or "8188"
        if not raw_port.isdigit() or not 0 < int(raw_port) < 65536:
            raise LaunchError(f"COMFYUI_PORT={raw_port!r} is not a port number; e.g. 8188")
        self.port = int(raw_port)
        self.input_dir = value("COMFYUI_INPUT_DIR", None if attach else f"{io_root}/input")
        self.output_dir = value("COMFYUI_OUTPUT_DIR", None if attach else f"{io_root}/output")
        self.temp_dir = value("COMFYUI_TEMP_DIR", None if attach else f"{io_root}/temp")
        if self.temp_dir is not None and os.path.basename(self.temp_dir.rstrip("/")) != "temp":
            raise LaunchError(
                f"COMFYUI_TEMP_DIR={self.temp_dir} must end in /temp: ComfyUI always appends 'temp'"
            )
        self.extra_model_paths = value("COMFYUI_EXTRA_MODEL_PATHS", IMAGE_EXTRA_MODEL_PATHS)
        self.extra_args = tuple(env.get("COMFYUI_EXTRA_ARGS", "").split())
        self.passthrough = tuple(env.get(PASSTHROUGH_ENV, "").replace(",", " ").split())

    def command(self) -> list[str]:
        """ComfyUI's command line (run with ``cwd=comfyui_dir``)."""
        cmd = [self.python, "main.py", "--listen", self.host, "--port", str(self.port),
               "--disable-auto-launch", "--disable-metadata"]  # fmt: skip
        if self.input_dir:
            cmd += ["--input-directory", self.input_dir]
        if self.output_dir:
            cmd += ["--output-directory", self.output_dir]
        if self.temp_dir:
            cmd += ["--temp-directory", os.path.dirname(self.temp_dir.rstrip("/"))]
        if self.extra_model_paths and os.path.exists(self.extra_model_paths):
            cmd += ["--extra-model-paths-config", self.extra_model_paths]
        return cmd + list(self.extra_args)

    def spawn(self) -> subprocess.Popen[bytes]:
        """Start ComfyUI in its own process group, output piped to the supervisor."""
        for folder in (self.input_dir, self.output_dir, self.temp_dir):
            if folder:
                os.makedirs(folder, exist_ok=True)
        return subprocess.Popen(
            self.command(),
            cwd=self.comfyui_dir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            # Deliberately in the worker's process group: whoever stops the worker's group
            # (RunPod, the local endpoint, Ctrl-C) stops ComfyUI with it, even if the worker
            # itself is SIGKILLed. The supervisor kills ComfyUI's own tree on a restart.
            env={**child_environment(os.environ, self.passthrough), "PYTHONUNBUFFERED": "1"},
        )


def spawn_early(env: Mapping[str, str]) -> tuple[LaunchSpec, subprocess.Popen[bytes]] | None:
    """Spawn ComfyUI now if this is spawn mode and the launch settings are usable.

    Anything odd (attach mode, a bad variable, a missing directory) returns None: the
    supervisor then starts ComfyUI itself and reports the problem properly.
    """
    if env.get("COMFYUI_URL", "").strip():
        return None
    try:
        spec = LaunchSpec(env, attach=False)
        return spec, spec.spawn()
    except (LaunchError, OSError):
        return None
