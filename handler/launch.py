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

from handler.environment import Env, Reader, SettingsError

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


def child_environment(source: Mapping[str, str], passthrough: tuple[str, ...] = ()) -> dict[str, str]:
    """The variables of ``source`` that ComfyUI may see: the allow list plus ``passthrough``.

    ``passthrough`` holds names, or prefixes ending in ``*``.
    """
    names = CHILD_ENV_NAMES | {p for p in passthrough if not p.endswith("*")}
    prefixes = CHILD_ENV_PREFIXES + tuple(p[:-1] for p in passthrough if p.endswith("*") and len(p) > 1)
    return {k: v for k, v in source.items() if k in names or k.startswith(prefixes)}


class LaunchSpec:
    """ComfyUI's launch parameters, from the environment (spawn mode only).

    Its variables' defaults are the worker image's (image/Dockerfile); problems go to ``read``, so a
    caller sees them together with the rest of the worker's (``Settings.from_env``).
    """

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

    def __init__(self, read: Reader, *, attach: bool) -> None:
        io_root = read(Env.COMFYUI_IO_ROOT)
        # Spawn mode owns ComfyUI's directories, so it always knows them; in attach mode they
        # are known only when given.
        self.comfyui_dir = read(Env.COMFYUI_DIR)
        self.python = read(Env.COMFYUI_PYTHON) or sys.executable
        self.host = read(Env.COMFYUI_HOST)
        self.port = read(Env.COMFYUI_PORT)
        self.input_dir = read(Env.COMFYUI_INPUT_DIR) or (None if attach else f"{io_root}/input")
        self.output_dir = read(Env.COMFYUI_OUTPUT_DIR) or (None if attach else f"{io_root}/output")
        self.temp_dir = read(Env.COMFYUI_TEMP_DIR) or (None if attach else f"{io_root}/temp")
        self.extra_model_paths = read(Env.COMFYUI_EXTRA_MODEL_PATHS)
        self.extra_args = read(Env.COMFYUI_EXTRA_ARGS)
        self.passthrough = read(Env.COMFYUI_ENV_PASSTHROUGH)

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
    read = Reader(env)
    if read(Env.COMFYUI_URL) is not None:
        return None
    try:
        spec = LaunchSpec(read, attach=False)
        read.check()
        return spec, spec.spawn()
    except (SettingsError, OSError):
        return None
