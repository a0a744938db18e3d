"""comfy-runpod's ComfyUI extension: "Queue on RunPod" (see README, "Queue on RunPod").

Copied alone into ``ComfyUI/custom_nodes/`` it works with what ComfyUI already has (aiohttp).
``endpoint_client`` is the project's one client for RunPod's job API; the repository's
``tasks.py`` imports it from here too, outside ComfyUI, so the routes are only registered
when ComfyUI's ``server.PromptServer`` is importable. Imports inside the package are
relative: ComfyUI imports this folder under its own name (``custom_nodes.comfy-runpod``).

Modules: ``routes`` (the ``/runpod/...`` handlers), ``hosts`` (the Host names they answer),
``jobs`` (one follow-up task per job), ``graph`` (depth sort of outputs), ``config`` (endpoint
and key from the environment or ``comfy-runpod.json``); the job API's client: ``endpoint_client``
(transport), ``errors``, ``job_error`` (a failed job's error; ``job_error.schema.json``),
``workflow_file``, ``inputs`` (input files for the job), ``outputs`` (saving results), ``run``
(``run_workflow``); ``web/`` is the frontend.
"""

from __future__ import annotations

import logging
from typing import Any

NODE_CLASS_MAPPINGS: dict[str, type] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}
WEB_DIRECTORY = "./web"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]

log = logging.getLogger("comfy_runpod")


def _register_with_comfyui() -> Any:
    """Mount the routes on ComfyUI's server; returns the tracker, or None outside ComfyUI."""
    try:
        import folder_paths  # type: ignore[import-not-found]
        from server import PromptServer  # type: ignore[import-not-found]
    except ImportError:
        return None
    instance = getattr(PromptServer, "instance", None)
    if instance is None:
        return None
    from pathlib import Path

    from .config import default_paths, load_config
    from .jobs import JobTracker, install_shutdown_hooks
    from .routes import Deps, add_routes

    user_dir = getattr(folder_paths, "get_user_directory", lambda: None)()
    try:  # the names ComfyUI listens on (--listen, a comma list) are this server's own
        from comfy.cli_args import args  # type: ignore[import-not-found]

        listen = [part for part in str(getattr(args, "listen", "") or "").split(",") if part]
    except ImportError:
        listen = []
    tracker = JobTracker(lambda: Path(folder_paths.get_output_directory()))
    deps = Deps(
        config=lambda: load_config(paths=default_paths(user_dir)),
        input_dir=lambda: Path(folder_paths.get_input_directory()),
        tracker=tracker,
        listen=listen,
    )
    add_routes(instance.routes, deps)
    install_shutdown_hooks(tracker, getattr(instance, "app", None), getattr(instance, "loop", None))
    cfg = deps.config()
    log.info(
        "comfy-runpod: /runpod routes ready; endpoint %s",
        f"{cfg.url} (from {cfg.source})" if cfg.configured else "not configured",
    )
    return tracker


TRACKER = _register_with_comfyui()
