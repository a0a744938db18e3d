"""Local tasks: a ComfyUI for the local endpoint, ``invoke local-endpoint`` and ``invoke demo``.

ComfyUI comes from, in order: ``--comfyui-url`` (attach to one you run), the pinned local
install in ``comfyui/`` once ``invoke setup`` made it (``--standin`` skips it), else the
project's ComfyUI stand-in (it speaks ComfyUI's API and runs model-free core nodes such as
the sample workflows'), so the whole loop works on a fresh clone without a GPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from custom_node.endpoint_client import EndpointClient, EndpointError, JobFailed, format_error, load_workflow

REPO = Path(__file__).resolve().parents[1]
LOCAL_COMFYUI = REPO / "comfyui"
SAMPLE_WORKFLOW = REPO / "workflows" / "sample_invert.json"


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
def comfyui_for_workers(comfyui_url: str, io_dir: str, standin: bool = False) -> Iterator[dict[str, str]]:
    """The worker environment attaching to a ComfyUI: the given one, the local install, or the stand-in."""
    if comfyui_url:
        yield attach_env(comfyui_url, Path(io_dir).resolve() if io_dir else None)
        return
    if not standin and (LOCAL_COMFYUI / "main.py").is_file():
        with local_comfyui() as env:
            yield env
        return
    from comfyui_standin import StandinProcess

    with tempfile.TemporaryDirectory(prefix="comfy-runpod-") as tmp:
        root = Path(tmp)
        io = root / "io"
        print(
            "no local ComfyUI (see `invoke setup`): starting the ComfyUI stand-in (model-free nodes only)",
            file=sys.stderr,
        )
        process = StandinProcess.spawn(
            root / "ComfyUI",
            [
                "--input-directory",
                str(io / "input"),
                "--output-directory",
                str(io / "output"),
                "--temp-directory",
                str(io),
                "--disable-metadata",
                "--cpu",
            ],
        )
        try:
            process.wait_listening(60)
            yield attach_env(process.url, io)
        finally:
            process.stop()


@contextlib.contextmanager
def local_comfyui() -> Iterator[dict[str, str]]:
    """The pinned local install (``invoke setup``) on a free port, until the block ends."""
    import shutil
    import socket
    import subprocess
    import time
    import urllib.request

    from comfy_install.launch import LaunchOptions, launch_command, prepare
    from comfy_install.layout import venv_python

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    io = LOCAL_COMFYUI / "runpod-io"
    options = LaunchOptions(
        python=venv_python(REPO / ".venv"),
        comfyui=LOCAL_COMFYUI,
        input_dir=io / "input",
        output_dir=io / "output",
        port=port,
        cpu=shutil.which("nvidia-smi") is None,
        extra_args=("--temp-directory", str(io), "--disable-metadata"),
    )
    prepare(options)
    print(
        f"starting the local ComfyUI (comfyui/, pinned by image/comfyui.lock.yaml) on {options.url}",
        file=sys.stderr,
    )
    process = subprocess.Popen(
        launch_command(options), cwd=LOCAL_COMFYUI, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                with urllib.request.urlopen(options.url + "/system_stats", timeout=2):  # noqa: S310 (loopback)
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise Exit(
                        "error: the local ComfyUI did not start; try `uv run invoke launch` to see why",
                        code=1,
                    ) from None
                time.sleep(0.2)
        yield attach_env(options.url, io)
    finally:
        process.terminate()
        process.wait(30)


@task(
    help={
        "port": "port to serve on (default 8000)",
        "workers": "worker processes running handler/handler.py (default 1)",
        "endpoint_id": "the id in the URLs: http://127.0.0.1:PORT/v2/<id> (default local)",
        "comfyui_url": "attach the workers to this ComfyUI (default: the local install, else the stand-in)",
        "standin": "use the ComfyUI stand-in even when comfyui/ is installed",
        "io_dir": "with --comfyui-url: the folder holding that ComfyUI's input/, output/, temp/",
    }
)
def local_endpoint(
    c: Context,
    port: int = 8000,
    workers: int = 1,
    endpoint_id: str = "local",
    comfyui_url: str = "",
    io_dir: str = "",
    standin: bool = False,
) -> None:
    """Serve RunPod's job API on 127.0.0.1 with real workers, until Ctrl-C."""
    from local_endpoint.cli import main as serve

    if workers < 1:
        raise Exit("error: --workers must be 1 or more", code=2)
    with comfyui_for_workers(comfyui_url, io_dir, standin) as env:
        args = ["--port", str(port), "--workers", str(workers), "--endpoint-id", endpoint_id]
        args += ["--comfyui-url", env["COMFYUI_URL"]]
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
    }
)
def demo(
    c: Context,
    workflow: str = str(SAMPLE_WORKFLOW),
    out: str = "outputs",
    comfyui_url: str = "",
    io_dir: str = "",
    standin: bool = False,
) -> None:
    """The whole loop on this machine: ComfyUI, the local endpoint, a worker, a job, saved outputs."""
    from local_endpoint.endpoint import LocalEndpoint
    from tasks.endpoint import _run_with_progress

    try:
        graph = load_workflow(Path(workflow))
    except EndpointError as exc:
        raise Exit(f"error: {exc}", code=2) from None
    with comfyui_for_workers(comfyui_url, io_dir) as env:
        print(
            "starting the local endpoint with one worker (python -u handler/handler.py) ...", file=sys.stderr
        )
        endpoint = LocalEndpoint(workers=1, worker_env=env, api_key="", line_sink=lambda worker, line: None)
        endpoint.start_in_thread(timeout=120)
        try:
            print(f"local endpoint: {endpoint.url}", file=sys.stderr)
            asyncio.run(_run_with_progress(EndpointClient(endpoint.url), graph, [], Path(out), timeout=600))
        except JobFailed as exc:
            raise Exit(format_error(exc.error), code=1) from None
        except (EndpointError, TimeoutError) as exc:
            raise Exit(f"error: {exc}", code=1) from None
        finally:
            endpoint.stop_thread()
