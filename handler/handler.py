"""Worker entry point: ``python -u handler/handler.py`` (the image's CMD).

Start-up order matters for cold starts: ComfyUI is spawned first (``initialize_worker`` at
import, standard library only), then the heavy imports (aiohttp, ``runpod``) run while
ComfyUI boots, then the worker waits for ComfyUI and its node list and hands ``handler`` to
``runpod.serverless.start``.

Attach mode (``COMFYUI_URL`` set) spawns nothing, so any Python process can do::

    import asyncio
    from handler.handler import handler
    result = asyncio.run(handler({"id": "1", "input": {"workflow": {...}}}))
"""

from __future__ import annotations

import os
import sys
import time

PROCESS_START = time.time()

if not __package__:  # run as a script: make the repository root importable, not handler/
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from handler.launch import spawn_early  # noqa: E402

# ComfyUI boots for seconds: start it before anything else is imported.
_EARLY = spawn_early(os.environ) if __name__ == "__main__" else None

import asyncio  # noqa: E402
import atexit  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
from collections.abc import Mapping  # noqa: E402
from typing import Any  # noqa: E402

from handler.environment import Env, Reader  # noqa: E402
from handler.errors import ComfyStartFailed, error_result  # noqa: E402
from handler.job_context import LOG_FORMAT, JobIdFilter  # noqa: E402
from handler.redaction import Redactor  # noqa: E402
from handler.settings import Settings, SettingsError  # noqa: E402
from handler.supervisor import AttachedComfyUI, ComfyProcess, make_comfy  # noqa: E402

log = logging.getLogger("comfy_runpod")

_settings: Settings | None = None
_comfy: ComfyProcess | AttachedComfyUI | None = None
_settings_error: SettingsError | None = None
_redactor = Redactor()


class _RedactingFilter(logging.Filter):
    """Keeps known secrets out of every log line (formatted message and arguments)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _redactor.text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def configure_logging() -> None:
    """Worker log format on stdout; RunPod collects it per worker."""
    root = logging.getLogger("comfy_runpod")
    if any(isinstance(f, _RedactingFilter) for h in root.handlers for f in h.filters):
        return
    stream = logging.StreamHandler(sys.stdout)
    stream.setFormatter(logging.Formatter(LOG_FORMAT))
    stream.addFilter(JobIdFilter())
    stream.addFilter(_RedactingFilter())
    root.addHandler(stream)
    # A bad level falls back to the default here; Settings.from_env reports it.
    root.setLevel(Reader(os.environ)(Env.COMFY_RUNPOD_LOG_LEVEL))
    root.propagate = False


def initialize_worker(env: Mapping[str, str] | None = None) -> None:
    """Read the settings and start ComfyUI (spawn mode) without waiting for it. Idempotent.

    Never raises: a configuration error is kept and reported on every job, so a
    misconfigured endpoint says what to fix instead of crash-looping.
    """
    global _settings, _comfy, _settings_error
    if _comfy is not None or _settings_error is not None:
        return
    configure_logging()
    try:
        _settings = Settings.from_env(env)
    except SettingsError as exc:
        _settings_error = exc
        log.error("configuration error: %s", exc)
        if _EARLY is not None:
            _EARLY[1].kill()
        return
    _redactor.add(*_settings.secrets)
    _comfy = make_comfy(_settings)
    early = _EARLY[1] if _EARLY and _EARLY[0].command() == _settings.comfyui_command() else None
    _comfy.start(early)
    atexit.register(_comfy.shutdown)


initialize_worker()

from handler.worker import Worker  # noqa: E402  (aiohttp: imported while ComfyUI boots)

_worker: Worker | None = None


def get_worker() -> Worker | None:
    global _worker
    if _worker is None and _settings is not None and _comfy is not None:
        _worker = Worker(_settings, _comfy)
        _worker.redactor = _redactor
    return _worker


def _progress_sink(job: dict[str, Any]) -> Any:
    """RunPod's progress_update in production; a debug log line elsewhere."""
    if os.environ.get("RUNPOD_WEBHOOK_POST_OUTPUT"):
        from runpod.serverless import progress_update

        return lambda progress: progress_update(job, progress)
    return lambda progress: log.debug("job %s progress %s", job.get("id"), progress)


async def handler(job: dict[str, Any]) -> dict[str, Any]:
    """The RunPod handler: one job in, its outputs (or a structured error) out."""
    worker = get_worker()
    if worker is None:
        error = ComfyStartFailed(f"the worker is misconfigured: {_settings_error}", refresh_worker=False)
        return error_result(error, _redactor)
    return await worker.run(job, progress=_progress_sink(job))


async def warm_up() -> None:
    """Wait until ComfyUI answers and its node list and model inventory are loaded."""
    worker = get_worker()
    if worker is None:
        return
    from handler.comfy_client import ComfyClient

    async with ComfyClient(worker.settings.base_url) as client:
        await worker.ensure_ready(client)


def main() -> None:
    # Until the SDK installs its own graceful handler, SIGTERM exits through atexit, which
    # stops ComfyUI: it runs in its own process group and would otherwise outlive us.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    # The SDK's own default is DEBUG, which prints every job's whole result (base64 images,
    # presigned URLs) into the worker log, twice. It reads the level once, at import.
    os.environ.setdefault(Env.RUNPOD_LOG_LEVEL.name, Env.RUNPOD_LOG_LEVEL.default)
    import runpod  # ~2 s: runs while ComfyUI boots

    try:
        asyncio.run(warm_up())
        now = time.time()
        log.info("worker ready for jobs %.3f s after process start", now - PROCESS_START)
        print(f"comfy-runpod: ready for jobs at {now:.6f}", flush=True)
    except Exception as exc:  # jobs will report it with the log tail
        log.error("ComfyUI is not ready: %s", _redactor.text(str(exc)))
    runpod.serverless.start({"handler": handler})


if __name__ == "__main__":
    main()
