"""Process mode: boot like ComfyUI's ``main.py``, with fault injection from the environment.

A worker's supervisor sees ComfyUI as a process: a boot log on stderr, a port that starts
answering after a while, exit codes, signals. This module reproduces that surface:

* ComfyUI's flags (``config.build_parser``); unknown flags are logged and ignored;
* a boot log resembling ComfyUI's ("Total VRAM ...", "Import times for custom nodes:",
  "Starting server", "To see the GUI go to: http://HOST:PORT"), on stderr, or stdout with
  ``--log-stdout``, flushed line by line;
* right after the sockets listen, exactly ``standin: listening at <time.time()>`` on stdout
  (benchmarks measure how fast a supervisor notices readiness against it);
* the temp dir (``--temp-directory D`` → ``D/temp``) wiped at start and on Ctrl-C; SIGTERM
  kills the process without cleanup, as it does ComfyUI.

Fault injection (environment variables):

``STANDIN_BOOT_DELAY_S``
    Listen this many seconds after the process started (its imports included), logging a
    "still loading" line about every half second: a boot of known length.
``STANDIN_EXIT_ON_BOOT``
    Exit with this status before listening, after some boot lines and a fake traceback.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from .config import StandinSettings, build_parser, settings_from_args
from .server import (
    COMFYUI_VERSION,
    FAKE_GPU_NAME,
    FAKE_VRAM_TOTAL,
    FRONTEND_VERSION,
    PYTORCH_VERSION,
    create_app,
)

log = logging.getLogger("comfyui_standin")

BOOT_DELAY_ENV = "STANDIN_BOOT_DELAY_S"
EXIT_ON_BOOT_ENV = "STANDIN_EXIT_ON_BOOT"

_FAKE_BOOT_TRACEBACK = """\
Traceback (most recent call last):
  File "{main}", line 149, in <module>
    import execution
  File "{dir}/execution.py", line 13, in <module>
    import comfy.model_management
  File "{dir}/comfy/model_management.py", line 235, in <module>
    total_vram = get_total_memory(get_torch_device()) / (1024 * 1024)
  File "{dir}/comfy/model_management.py", line 185, in get_torch_device
    return torch.device(torch.cuda.current_device())
RuntimeError: Found no NVIDIA driver on your system. Please check that you have an NVIDIA GPU \
and installed a driver from http://www.nvidia.com/Download/index.aspx
"""


def _setup_logging(args: Sequence[str]) -> None:
    namespace, _ = build_parser().parse_known_args(list(args))
    handler = logging.StreamHandler(sys.stdout if namespace.log_stdout else sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(namespace.verbose)


def _boot_banner(settings: StandinSettings, comfy_dir: Path) -> None:
    ram_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    log.info("[standin] ComfyUI stand-in (comfyui_standin) emulating ComfyUI %s", COMFYUI_VERSION)
    log.info("Checkpoint files will always be loaded safely.")
    if settings.cpu:
        log.info("Total VRAM %d MB, total RAM %d MB", ram_mb, ram_mb)
        log.info("pytorch version: %s", PYTORCH_VERSION)
        log.info("Set vram state to: DISABLED")
        log.info("Device: cpu")
    else:
        log.info("Total VRAM %d MB, total RAM %d MB", FAKE_VRAM_TOTAL // (1024 * 1024), ram_mb)
        log.info("pytorch version: %s", PYTORCH_VERSION)
        log.info("Set vram state to: NORMAL_VRAM")
        log.info("Device: %s", FAKE_GPU_NAME)
    log.info("Using pytorch attention")
    log.info("Python version: %s", sys.version)
    log.info("ComfyUI version: %s", COMFYUI_VERSION)
    log.info("ComfyUI frontend version: %s", FRONTEND_VERSION)
    log.info("[Prompt Server] web root: %s", comfy_dir / "web")


def _fail_on_boot(code: int, settings: StandinSettings, comfy_dir: Path, argv0: str) -> int:
    _boot_banner(settings, comfy_dir)
    log.info("%s=%d: simulating a crash while starting", EXIT_ON_BOOT_ENV, code)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.write(_FAKE_BOOT_TRACEBACK.format(main=argv0, dir=comfy_dir))
    sys.stderr.flush()
    return code


async def _slow_boot(seconds: float, started: float) -> None:
    """Wait until ``seconds`` after the process started (imports included), like a real boot.

    Counting from the process start, not from here, keeps the boot time the same whatever
    the imports before it cost, so benchmarks can subtract it.
    """
    deadline = time.monotonic() + seconds - (time.time() - started)
    while (remaining := deadline - time.monotonic()) > 0:
        log.info("[standin] %s: still loading, %.1f s until the server listens", BOOT_DELAY_ENV, remaining)
        await asyncio.sleep(min(0.5, remaining))


async def serve(
    settings: StandinSettings, comfy_dir: Path, boot_delay: float = 0, started: float | None = None
) -> None:
    """Boot, listen on every ``--listen`` address, then serve until cancelled."""
    app = create_app(settings)
    if boot_delay > 0:
        await _slow_boot(boot_delay, time.time() if started is None else started)
    log.info("\nImport times for custom nodes:")
    log.info("   0.0 seconds: %s", comfy_dir / "custom_nodes" / "websocket_image_save.py")
    log.info("   0.0 seconds: %s", comfy_dir / "custom_nodes" / "comfyui_standin")
    log.info("")
    log.info("Context impl SQLiteImpl.")
    log.info("Will assume non-transactional DDL.")
    log.info("No target revision found.")
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        verbose = not settings.dont_print_server
        if verbose:
            log.info("Starting server\n")
        addresses = settings.listen.split(",")
        for address in addresses:
            await web.TCPSite(runner, address, settings.port).start()
        print(f"standin: listening at {time.time()}", flush=True)
        if verbose:
            # The bound port, so that --port 0 (pick a free port) can be discovered.
            port = int(runner.addresses[0][1]) if runner.addresses else settings.port
            for address in addresses:
                shown = f"[{address}]" if ":" in address else address
                log.info("To see the GUI go to: http://%s:%d", shown, port)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(
    args: Sequence[str] | None = None,
    *,
    comfy_dir: Path | None = None,
    argv0: str = "main.py",
    started: float | None = None,
) -> int:
    """Run the stand-in like ``python main.py <args>``; returns the exit status."""
    args = list(sys.argv[1:] if args is None else args)
    comfy_dir = (comfy_dir or Path.cwd()).resolve()
    _setup_logging(args)
    settings = settings_from_args(args, comfy_dir=comfy_dir, argv0=argv0, process_mode=True)
    if settings.unknown_args:
        log.warning("[standin] WARNING: ignoring unknown arguments: %s", " ".join(settings.unknown_args))

    exit_on_boot = os.environ.get(EXIT_ON_BOOT_ENV, "").strip()
    if exit_on_boot:
        return _fail_on_boot(int(exit_on_boot), settings, comfy_dir, argv0)

    paths = settings.paths
    if "--output-directory" in args:
        log.info("Setting output directory to: %s", paths.output_dir)
    if "--input-directory" in args:
        log.info("Setting input directory to: %s", paths.input_dir)
    if "--temp-directory" in args:
        log.info("Setting temp directory to: %s", paths.temp_dir)
    (paths.base_dir / "input").mkdir(parents=True, exist_ok=True)
    shutil.rmtree(paths.temp_dir, ignore_errors=True)
    paths.temp_dir.mkdir(parents=True, exist_ok=True)
    _boot_banner(settings, comfy_dir)

    boot_delay = float(os.environ.get(BOOT_DELAY_ENV, "0") or 0)
    try:
        asyncio.run(serve(settings, comfy_dir, boot_delay, started))
    except KeyboardInterrupt:
        log.info("\nStopped server")
    shutil.rmtree(paths.temp_dir, ignore_errors=True)
    return 0
