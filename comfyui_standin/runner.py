"""Running the stand-in: in a background thread (fast tests) or as a fake ComfyUI checkout.

In-process::

    with StandinComfyUI(tmp_path / "comfyui", models={"checkpoints": ["sd15.safetensors"]}) as comfy:
        requests.post(f"{comfy.url}/prompt", json={"prompt": workflow})
        comfy.wait_for_history(prompt_id)
        assert comfy.executed_count("SaveImage") == 1

Process mode (what a worker's supervisor launches)::

    comfy_dir = make_fake_comfyui_dir(tmp_path / "ComfyUI")
    subprocess.Popen([sys.executable, "main.py", "--listen", "127.0.0.1", "--port", "8188"],
                     cwd=comfy_dir)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import shutil
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web
from PIL import Image

from .config import settings_from_args
from .executor import ExecutionRecord
from .frontend import Frontend
from .server import STANDIN_KEY, Observations, RecordedRequest, StandinServer, create_app

T = TypeVar("T")

#: This package; a fake checkout links it beside its ``main.py``, as ComfyUI's ``comfy/`` lies there.
PACKAGE_DIR = Path(__file__).resolve().parent

#: Folders of a fresh ComfyUI checkout (``models/...``), each with ComfyUI's placeholder file.
_CHECKOUT_PLACEHOLDERS = {
    "models/audio_encoders": "put_audio_encoder_models_here",
    "models/checkpoints": "put_checkpoints_here",
    "models/clip": "put_clip_or_text_encoder_models_here",
    "models/clip_vision": "put_clip_vision_models_here",
    "models/configs": None,
    "models/controlnet": "put_controlnets_and_t2i_here",
    "models/diffusers": "put_diffusers_models_here",
    "models/diffusion_models": "put_diffusion_model_files_here",
    "models/embeddings": "put_embeddings_or_textual_inversion_concepts_here",
    "models/gligen": "put_gligen_models_here",
    "models/hypernetworks": "put_hypernetworks_here",
    "models/loras": "put_loras_here",
    "models/model_patches": "put_model_patches_here",
    "models/photomaker": "put_photomaker_models_here",
    "models/style_models": "put_t2i_style_model_here",
    "models/text_encoders": "put_text_encoder_files_here",
    "models/unet": "put_unet_files_here",
    "models/upscale_models": "put_esrgan_and_other_upscale_models_here",
    "models/vae": "put_vae_here",
    "models/vae_approx": "put_taesd_encoder_pth_and_taesd_decoder_pth_here",
    "output": "_output_images_will_be_put_here",
    "custom_nodes": None,
    "input": None,
}

_MAIN_PY = '''"""ComfyUI stand-in: a fake ComfyUI main.py written by comfyui_standin.

Run it like ComfyUI: ``python main.py --listen 127.0.0.1 --port 8188 [ComfyUI flags]``.
Fault injection: STANDIN_BOOT_DELAY_S (listen this many seconds after the process started),
STANDIN_EXIT_ON_BOOT (exit with this code before listening).
"""

import time

STARTED = time.time()  # first thing: the boot delay counts from here

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

# comfyui_standin/ beside this file links to the stand-in package (nothing else is importable).
from comfyui_standin.cli import main  # noqa: E402

if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    sys.exit(main(sys.argv[1:], comfy_dir=here, argv0=sys.argv[0], started=STARTED))
'''


def make_fake_comfyui_dir(path: Path) -> Path:
    """Write a fake ComfyUI checkout at ``path``: ``main.py`` plus ComfyUI's folder layout.

    ``cd path && python main.py <ComfyUI flags>`` then behaves like ComfyUI: ``main.py``
    imports the stand-in through a link ``path/comfyui_standin`` to this package, so no
    ``sys.path`` edit is needed and nothing else of the repository is importable there. Like a
    real checkout it contains ``input/example.png`` and the empty ``models/<folder>``
    directories. Returns ``path``.
    """
    path.mkdir(parents=True, exist_ok=True)
    for folder, placeholder in _CHECKOUT_PLACEHOLDERS.items():
        directory = path / folder
        directory.mkdir(parents=True, exist_ok=True)
        if placeholder:
            (directory / placeholder).touch()
    example = path / "input" / "example.png"
    if not example.exists():
        Image.new("RGB", (64, 64), (128, 128, 128)).save(example)
    link = path / "comfyui_standin"
    if link.is_symlink() and link.resolve() != PACKAGE_DIR:
        link.unlink()  # a checkout written by another copy of the repository
    if not link.is_symlink():
        link.symlink_to(PACKAGE_DIR, target_is_directory=True)
    (path / "main.py").write_text(_MAIN_PY, encoding="utf-8")
    return path


def spawn_mode_env(root: Path, port: int) -> dict[str, str]:
    """The worker env of spawn mode with a fake ComfyUI checkout under ``root``.

    The worker then starts the stand-in exactly as it starts ComfyUI in the image.
    """
    return {
        "COMFYUI_DIR": str(make_fake_comfyui_dir(root / "ComfyUI")),
        "COMFYUI_PYTHON": sys.executable,
        "COMFYUI_PORT": str(port),
        "COMFYUI_IO_ROOT": str(root / "io"),
        "COMFYUI_EXTRA_MODEL_PATHS": str(root / "no-extra-model-paths.yaml"),
        "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true",
        "RUNPOD_SKIP_GPU_CHECK": "true",
    }


class StandinComfyUI:
    """An in-process ComfyUI stand-in on ``127.0.0.1:<free port>``, served from a thread.

    ``root`` plays the ComfyUI checkout (see :func:`make_fake_comfyui_dir`); ``models`` maps
    folder keys to relative file names to create (``{"checkpoints": ["sd15.safetensors"]}``);
    ``boot_delay`` delays listening (``start()`` still returns once listening); ``extra_args``
    are ComfyUI flags (``["--cache-none", "--disable-metadata", "--cpu"]``); ``frontend``
    (opt-in) serves the real ComfyUI frontend and loads ``<root>/custom_nodes/*`` (``frontend.py``).

    Attributes: ``url``, ``port``, ``input_dir``, ``output_dir``, ``temp_dir``, ``models_dir``,
    ``requests`` (every request received as ``(method, path, json_or_None)``). Helpers:
    :meth:`history`, :meth:`wait_for_history`, :meth:`executed_count`, :meth:`executions`,
    :meth:`queue`, :meth:`interrupt`.

    ``StandinCrash`` cannot end this process; in-process it fails with ``RuntimeError``.
    """

    def __init__(
        self,
        root: Path,
        *,
        models: dict[str, list[str]] | None = None,
        boot_delay: float = 0,
        extra_args: Sequence[str] = (),
        frontend: Frontend | None = None,
    ) -> None:
        self.root = make_fake_comfyui_dir(Path(root))
        self.frontend = frontend
        for folder, names in (models or {}).items():
            for name in names:
                target = self.root / "models" / folder / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(b"stand-in model placeholder")
        self.boot_delay = boot_delay
        self.args = ["--listen", "127.0.0.1", "--port", "0", *extra_args]
        self.settings = settings_from_args(self.args, comfy_dir=self.root)
        self.input_dir = self.settings.paths.input_dir
        self.output_dir = self.settings.paths.output_dir
        self.temp_dir = self.settings.paths.temp_dir
        self.models_dir = self.settings.paths.models_dir
        self.port = 0
        self.observations = Observations()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._server: StandinServer | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, client_id: str | None = None) -> str:
        """``ws://127.0.0.1:PORT/ws`` (with ``?clientId=`` when given)."""
        suffix = f"?clientId={client_id}" if client_id else ""
        return f"ws://127.0.0.1:{self.port}/ws{suffix}"

    def start(self) -> StandinComfyUI:
        """Start serving; returns once the port is listening (raises if that failed).

        After :meth:`stop`, starting again behaves like a ComfyUI restart on the same port:
        queue, history and caches are gone, files stay.
        """
        if self._thread is not None:
            raise RuntimeError("StandinComfyUI already started")
        self._ready.clear()
        self._error = None
        shutil.rmtree(self.temp_dir, ignore_errors=True)  # ComfyUI wipes temp at start
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="comfyui-standin", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise RuntimeError("the ComfyUI stand-in failed to start") from self._error
        return self

    def stop(self) -> None:
        """Stop serving (cancelling any running prompt) and wipe the temp dir, like ComfyUI."""
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None or loop is None or stop is None:
            return
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
        self._thread = None
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def restart(self) -> None:
        """Stop and start again (same port, same folders, fresh server state)."""
        self.stop()
        self.start()

    def __enter__(self) -> StandinComfyUI:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as error:
            self._error = error
        finally:
            self._ready.set()
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        if self.boot_delay > 0:
            await asyncio.sleep(self.boot_delay)
        app = create_app(self.settings, observations=self.observations, frontend=self.frontend)
        self._server = app[STANDIN_KEY]
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        self._runner = runner
        try:
            site = web.TCPSite(runner, "127.0.0.1", self.port)  # 0 the first time
            await site.start()
            self.port = int(runner.addresses[0][1])
            self._ready.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()

    # -- observing the server from the test thread -----------------------------------------

    @property
    def server(self) -> StandinServer:
        if self._server is None:
            raise RuntimeError("StandinComfyUI is not started")
        return self._server

    def _call(self, func: Callable[[], Awaitable[T]], timeout: float = 10) -> T:
        if self._loop is None or self._thread is None:
            raise RuntimeError("StandinComfyUI is not started")
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(_await(func), self._loop)
        return future.result(timeout)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request so far (across restarts): ``(method, path, json_body_or_None)``."""
        return self.observations.requests

    def executions(self) -> list[ExecutionRecord]:
        """Node executions (cache hits excluded), oldest first."""
        return self.observations.executions

    def executed_count(self, class_type: str | None = None) -> int:
        """How many times nodes of ``class_type`` (any class if ``None``) really executed."""
        return sum(
            1 for r in self.observations.executions if class_type is None or r.class_type == class_type
        )

    def history(self, prompt_id: str | None = None) -> dict[str, Any]:
        """``GET /history`` (all entries) or ``GET /history/{prompt_id}`` as a dict copy."""

        async def read() -> dict[str, Any]:
            return self.server.queue.get_history(prompt_id)

        return self._call(read)

    def wait_for_history(self, prompt_id: str, timeout: float = 10) -> dict[str, Any]:
        """Block until ``prompt_id`` has a history entry; return that entry."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.history(prompt_id)
            if entry:
                return entry[prompt_id]  # type: ignore[no-any-return]
            time.sleep(0.005)
        raise TimeoutError(f"no history entry for {prompt_id} after {timeout} s")

    def queue(self) -> dict[str, list[Any]]:
        """``GET /queue``: running and pending queue tuples."""

        async def read() -> dict[str, list[Any]]:
            running, pending = self.server.queue.current_queue()
            return {"queue_running": running, "queue_pending": pending}

        return self._call(read)

    def interrupt(self) -> None:
        """Set the interrupt flag, as a global ``POST /interrupt`` would."""

        async def set_flag() -> None:
            self.server.executor.interrupt.set()

        self._call(set_flag)


async def _await(func: Callable[[], Awaitable[T]]) -> T:
    return await func()
