"""A faithful ComfyUI 0.3.64 stand-in for testing the RunPod worker without a GPU.

It speaks ComfyUI's HTTP and websocket API (same routes, bodies, error shapes and event
order as captured from a real server), executes a small set of real node classes with real
files, and adds fault-injection nodes (``Standin*``) for crashes, hangs, exceptions and
dropped websockets.

* :class:`StandinComfyUI` runs it in a background thread, for fast tests.
* :func:`make_fake_comfyui_dir` writes a fake ComfyUI checkout whose ``main.py`` runs it as a
  process, for supervisor tests (``STANDIN_BOOT_DELAY_S`` / ``STANDIN_EXIT_ON_BOOT`` inject
  boot faults); :class:`StandinProcess` starts and watches such a process.

Opt-in, :class:`Frontend` makes it serve the real ComfyUI frontend and load custom nodes.
"""

from .frontend import Frontend
from .nodes import NODE_CLASSES, STANDIN_NODES
from .process import StandinProcess
from .runner import StandinComfyUI, make_fake_comfyui_dir, spawn_mode_env
from .server import RecordedRequest

__all__ = [
    "NODE_CLASSES",
    "STANDIN_NODES",
    "Frontend",
    "RecordedRequest",
    "StandinComfyUI",
    "StandinProcess",
    "make_fake_comfyui_dir",
    "spawn_mode_env",
]
