"""A faithful ComfyUI 0.3.64 stand-in: the RunPod worker without a GPU or a ComfyUI install.

It speaks ComfyUI's HTTP and websocket API (same routes, bodies, error shapes and event
order as captured from a real server), executes a small set of real node classes with real
files, and adds fault-injection nodes (``Standin*``) for crashes, hangs, exceptions and
dropped websockets. ``invoke demo`` and ``invoke local-endpoint`` run it when no ComfyUI is
installed (or with ``--standin``); the tests and ``bench/`` run the worker against it.

* :class:`StandinComfyUI` runs it in a background thread, for fast tests.
* :func:`make_fake_comfyui_dir` writes a fake ComfyUI checkout whose ``main.py`` runs it as a
  process, as a worker's supervisor launches ComfyUI (``STANDIN_BOOT_DELAY_S`` /
  ``STANDIN_EXIT_ON_BOOT`` inject boot faults); :class:`StandinProcess` starts and watches
  such a process; ``python -m comfyui_standin`` is the same process in the current folder.

Modules: ``server`` (routes, websocket), ``prompt_queue`` (queue, history), ``executor``
(caches, execution), ``validation``, ``nodes`` (the node base) with its two families
``core_nodes`` (emulated ComfyUI nodes) and ``fault_nodes``, ``registry``, ``folders``,
``config`` (ComfyUI's flags), ``cli`` (process mode), ``runner``/``process`` (starting it).
Opt-in, :class:`Frontend` makes it serve the real ComfyUI frontend and load custom nodes.
"""

from .fault_nodes import STANDIN_NODES
from .frontend import Frontend
from .process import StandinProcess
from .registry import NODE_CLASSES
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
