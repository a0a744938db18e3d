"""Local tasks: a ComfyUI for the local endpoint, ``invoke local-endpoint`` and ``invoke demo``.

ComfyUI comes from, in order: ``--comfyui-url`` (attach to one you run), the pinned local
install in ``comfyui/`` (``--dir``) once ``invoke setup`` made it (``--standin`` skips it),
else the project's ComfyUI stand-in (``comfyui_standin``: it speaks ComfyUI's API and runs
model-free core nodes such as the sample workflows'), so the whole loop works on a fresh
clone without a GPU. Either is started and watched by the worker's own supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from custom_node.endpoint_client import EndpointClient
from custom_node.errors import EndpointError, JobFailed
from custom_node.workflow_file import load_workflow
from tasks.comfyui import DIR_HELP

REPO = Path(__file__).resolve().parents[1]
LOCAL_COMFYUI = REPO / "comfyui"
SAMPLE_WORKFLOW = REPO / "workflows" / "sample_invert.json"


def _local(dir: str) -> Path:
    """The local install of ``--dir`` (it must be one), else ``comfyui/`` (used if it is one)."""
    if not dir:
        return LOCAL_COMFYUI
    local = Path(dir).expanduser().absolute()
    if not (local / "main.py").is_file():
        raise Exit(f"error: --dir {dir}: no ComfyUI there (no main.py); `invoke setup --dir {dir}`", code=2)
    return local


def attach_env(url: str, io: Path | None) -> dict[str, str]:
    """The workers' env attaching to ComfyUI at ``url``; its input/, output/, temp/ lie under ``io``."""
    env = {"COMFYUI_URL": url}
    if io is not None:
        env |= {
            "COMFYUI_INPUT_DIR": str(io / "input"),
            "COMFYUI_OUTPUT_DIR": str(io / "output"),
            "COMFYUI_TEMP_DIR": str(io / "temp"),
        }
    return env


@contextlib.contextmanager
def comfyui_for_workers(
    comfyui_url: str, io_dir: str, standin: bool = False, local: Path = LOCAL_COMFYUI
) -> Iterator[dict[str, str]]:
    """The worker environment attaching to a ComfyUI: the given one, the local install, or the stand-in.

    ``local`` is the local install's folder; ``standin`` skips it even when it is there.
    """
    if comfyui_url:
        yield attach_env(comfyui_url, Path(io_dir).resolve() if io_dir else None)
        return
    if not standin and (local / "main.py").is_file():
        io = local / "runpod-io"
        print(f"starting the local ComfyUI ({local}, pinned by image/comfyui.lock.yaml)", file=sys.stderr)
        with supervised_comfyui(local_install_env(local, io), f"the local ComfyUI in {local}") as url:
            yield attach_env(url, io)
        return
    from comfyui_standin import spawn_mode_env

    with tempfile.TemporaryDirectory(prefix="comfy-runpod-") as tmp:
        root = Path(tmp)
        print(
            "starting the ComfyUI stand-in (model-free nodes only; `invoke setup` installs ComfyUI)",
            file=sys.stderr,
        )
        env = {**spawn_mode_env(root, free_port()), "COMFYUI_EXTRA_ARGS": "--cpu"}
        with supervised_comfyui(env, "the ComfyUI stand-in") as url:
            yield attach_env(url, root / "io")


def local_install_env(local: Path, io: Path) -> dict[str, str]:
    """The spawn-mode env that starts the local install like the worker starts the image's ComfyUI.

    Its input/, output/ and temp/ lie under ``io``; ``--cpu`` where there is no NVIDIA GPU.
    """
    from comfy_install.layout import venv_python
    from tasks.comfyui import venv_dir

    return {
        "COMFYUI_DIR": str(local),
        "COMFYUI_PYTHON": str(venv_python(venv_dir(""))),
        "COMFYUI_PORT": str(free_port()),
        "COMFYUI_IO_ROOT": str(io),
        "COMFYUI_EXTRA_ARGS": "--cpu" if shutil.which("nvidia-smi") is None else "",
    }


def free_port() -> int:
    """A TCP port nothing listens on right now (127.0.0.1)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def supervised_comfyui(env: dict[str, str], what: str, timeout_s: float = 300) -> Iterator[str]:
    """ComfyUI started by the worker's own supervisor (spawn mode, ``env``); yields its URL.

    The same launch, readiness check (``GET /system_stats``) and crash restarts as on RunPod.
    A start that fails ends the task with ComfyUI's last output lines, so the user sees why.
    """
    from handler.errors import ComfyStartFailed
    from handler.settings import Settings
    from handler.supervisor import ComfyProcess

    # A failed start is reported once, by the Exit below; a crash later restarts ComfyUI.
    settings = Settings.from_env({**env, "COMFYUI_STARTUP_TIMEOUT": str(timeout_s), "MAX_RESTARTS": "1"})
    quiet = logging.NullHandler()  # without a handler, Python would print the supervisor's errors too
    supervisor_log = logging.getLogger("comfy_runpod")
    supervisor_log.addHandler(quiet)
    comfy = ComfyProcess(settings)
    try:
        comfy.start()
        try:
            comfy.ensure_ready()
        except ComfyStartFailed as exc:
            output = "\n".join(f"  {line}" for line in comfy.log_tail(40)) or "  (no output)"
            why = f"it {comfy.last_exit.describe()} while starting" if comfy.last_exit else exc.message
            raise Exit(
                f"{output}\nerror: {what} did not start: {why} (its last output is above)", code=1
            ) from None
        yield comfy.base_url
    finally:
        comfy.shutdown()
        supervisor_log.removeHandler(quiet)


@task(
    help={
        "port": "port to serve on (default 8000)",
        "workers": "worker processes running handler/handler.py (default 1)",
        "endpoint_id": "the id in the URLs: http://127.0.0.1:PORT/v2/<id> (default local)",
        "comfyui_url": "attach the workers to this ComfyUI (default: the local install, else the stand-in)",
        "standin": "use the ComfyUI stand-in even when comfyui/ is installed",
        "io_dir": "with --comfyui-url: the folder holding that ComfyUI's input/, output/, temp/",
        "allow_host": "also accept requests addressed to this host name (repeat for several)",
        "allow_private_webhooks": "allow webhooks to loopback and private addresses (a local receiver)",
        "dir": DIR_HELP,
    },
    iterable=["allow_host"],
)
def local_endpoint(
    c: Context,
    port: int = 8000,
    workers: int = 1,
    endpoint_id: str = "local",
    comfyui_url: str = "",
    io_dir: str = "",
    standin: bool = False,
    allow_host: list[str] | None = None,
    allow_private_webhooks: bool = False,
    dir: str = "",
) -> None:
    """Serve RunPod's job API on 127.0.0.1 with real workers, until Ctrl-C.

    Without RUNPOD_API_KEY it makes a key, prints it once and writes it where the local
    clients (invoke run, the custom node) find it; see local_endpoint.keys.
    """
    from local_endpoint.cli import main as serve

    if workers < 1:
        raise Exit("error: --workers must be 1 or more", code=2)
    with comfyui_for_workers(comfyui_url, io_dir, standin, _local(dir)) as env:
        args = ["--port", str(port), "--workers", str(workers), "--endpoint-id", endpoint_id]
        args += ["--comfyui-url", env["COMFYUI_URL"]]
        for name in allow_host or []:
            args += ["--allow-host", name]
        if allow_private_webhooks:
            args.append("--allow-private-webhooks")
        for flag, name in (
            ("--input-dir", "COMFYUI_INPUT_DIR"),
            ("--output-dir", "COMFYUI_OUTPUT_DIR"),
            ("--temp-dir", "COMFYUI_TEMP_DIR"),
        ):
            if name in env:
                args += [flag, env[name]]
        code = serve(args)
    if code:
        raise Exit(code=code)


@task(
    help={
        "workflow": "API-format workflow to run (default workflows/sample_invert.json)",
        "out": "folder for the outputs (default outputs/)",
        "comfyui_url": "use this ComfyUI (default: the local install, else the stand-in)",
        "standin": "use the ComfyUI stand-in even when comfyui/ is installed",
        "io_dir": "with --comfyui-url: the folder holding that ComfyUI's input/, output/, temp/",
        "dir": DIR_HELP,
    }
)
def demo(
    c: Context,
    workflow: str = str(SAMPLE_WORKFLOW),
    out: str = "outputs",
    comfyui_url: str = "",
    io_dir: str = "",
    standin: bool = False,
    dir: str = "",
) -> None:
    """The whole loop on this machine: ComfyUI, the local endpoint, a worker, a job, saved outputs."""
    from local_endpoint.endpoint import LocalEndpoint
    from tasks.endpoint import _run_with_progress

    try:
        graph = load_workflow(Path(workflow))
    except EndpointError as exc:
        raise Exit(f"error: {exc}", code=2) from None
    with comfyui_for_workers(comfyui_url, io_dir, standin, _local(dir)) as env:
        print(
            "starting the local endpoint with one worker (python -u handler/handler.py) ...", file=sys.stderr
        )
        # Its key (RUNPOD_API_KEY, else one made for this run) goes straight to the client here.
        endpoint = LocalEndpoint(workers=1, worker_env=env, line_sink=lambda worker, line: None)
        endpoint.start_in_thread(timeout=120)
        try:
            print(f"local endpoint: {endpoint.url}", file=sys.stderr)
            client = EndpointClient(endpoint.url, endpoint.api_key)
            asyncio.run(_run_with_progress(client, graph, [], Path(out), timeout=600))
        except JobFailed as exc:
            raise Exit(exc.error.text(), code=1) from None
        except (EndpointError, TimeoutError) as exc:
            raise Exit(f"error: {exc}", code=1) from None
        finally:
            endpoint.stop_thread()
