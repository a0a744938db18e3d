"""Command line: serve a local RunPod endpoint until Ctrl-C.

    python -m local_endpoint --workers 2 --comfyui-url http://127.0.0.1:8188 \\
        --input-dir ~/ComfyUI/input --output-dir ~/ComfyUI/output --temp-dir ~/ComfyUI/temp

Without ``--comfyui-url`` each worker starts its own ComfyUI (spawn mode), configured by the
``COMFYUI_*`` variables of this shell, exactly like the image.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence

from custom_node.local_key import state_dir
from local_endpoint.endpoint import LocalEndpoint
from local_endpoint.settings import EndpointSettings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m local_endpoint",
        description="A local RunPod serverless endpoint (job API + worker protocol) with N workers "
        "running handler/handler.py under the unmodified RunPod SDK.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--endpoint-id", default="local", help="endpoint id in the URLs (default local)")
    parser.add_argument(
        "--comfyui-url", help="attach the workers to this ComfyUI instead of spawning one each"
    )
    parser.add_argument("--input-dir", help="that ComfyUI's input directory (COMFYUI_INPUT_DIR)")
    parser.add_argument("--output-dir", help="that ComfyUI's output directory (COMFYUI_OUTPUT_DIR)")
    parser.add_argument("--temp-dir", help="that ComfyUI's temp directory (COMFYUI_TEMP_DIR)")
    parser.add_argument(
        "--api-key",
        help="require this key from clients (default: $RUNPOD_API_KEY if set, else a random key made "
        "for this run, printed once and written to a 0600 file the project's clients read)",
    )
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also accept requests addressed to this host name (repeatable; default: localhost, "
        "loopback IPs and --host)",
    )
    parser.add_argument(
        "--allow-private-webhooks",
        action="store_true",
        help="allow webhooks to loopback and private addresses (default: public addresses only)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the workers (repeatable)",
    )
    parser.add_argument(
        "--retention", type=float, default=None, help="seconds a /run result stays readable (default 1800)"
    )
    parser.add_argument(
        "--sync-retention",
        type=float,
        default=None,
        help="seconds a /runsync result stays readable (default 60)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="do not echo the workers' logs")
    return parser


def worker_env_from(args: argparse.Namespace) -> dict[str, str]:
    """The handler's environment from the command line (``--comfyui-url``, dirs, ``--env``)."""
    env: dict[str, str] = {}
    for name, value in (
        ("COMFYUI_URL", args.comfyui_url),
        ("COMFYUI_INPUT_DIR", args.input_dir),
        ("COMFYUI_OUTPUT_DIR", args.output_dir),
        ("COMFYUI_TEMP_DIR", args.temp_dir),
    ):
        if value:
            env[name] = value
    for item in args.env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"--env wants NAME=VALUE, got {item!r}")
        env[name] = value
    return env


def banner(endpoint: LocalEndpoint) -> str:
    """What to print once listening: the URL, the key if it was made for this run, how to call it.

    A configured key (``RUNPOD_API_KEY``, ``--api-key``) is never printed; a generated one is
    printed here, once, since the user needs it for curl or the SDK.
    """
    if endpoint.key_generated:
        where = (
            f" (also in {endpoint.key_path}, which invoke and the custom node read)"
            if endpoint.key_path
            else ""
        )
        key_lines = [
            f"Client requests need this API key, made for this run{where}:",
            f"  RUNPOD_API_KEY={endpoint.api_key}",
        ]
    else:
        key_lines = ["Client requests need your API key ($RUNPOD_API_KEY or --api-key)."]
    auth = '-H "Authorization: Bearer $RUNPOD_API_KEY" '
    return "\n".join(
        [
            f"Local RunPod endpoint {endpoint.endpoint_id!r}, {endpoint.workers} worker(s): {endpoint.url}",
            *key_lines,
            "Point clients at it:",
            f"  RUNPOD_ENDPOINT_URL={endpoint.url}",
            f"  RunPod SDK: RUNPOD_ENDPOINT_BASE_URL={endpoint.base_url} "
            f"(or runpod.endpoint_url_base = '{endpoint.base_url}'),",
            f"    runpod.Endpoint('{endpoint.endpoint_id}'), runpod.api_key = the key",
            f"  curl -X POST {endpoint.url}/runsync {auth}-H 'Content-Type: application/json' "
            '-d \'{"input": {"workflow": ...}}\'',
            "Ctrl-C to stop.",
        ]
    )


async def serve(endpoint: LocalEndpoint) -> int:
    """Run until SIGINT or SIGTERM; returns the exit status."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await endpoint.start()
    except OSError as exc:
        print(f"cannot listen on {endpoint.host}:{endpoint.port}: {exc}", file=sys.stderr)
        await endpoint.stop()
        return 1
    print(banner(endpoint), flush=True)

    async def announce_ready() -> None:
        with contextlib.suppress(TimeoutError):
            await endpoint.wait_ready(timeout=3600)
            print(f"{endpoint.workers} worker(s) ready for jobs", flush=True)

    ready = loop.create_task(announce_ready())
    try:
        await stop.wait()
    finally:
        ready.cancel()
        print("stopping the workers ...", flush=True)
        await endpoint.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.workers < 0:
        raise SystemExit("--workers must be 0 or more")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stdout)
    # Worker lines carry their own timestamps: print them as they are, after the worker id.
    echo = logging.StreamHandler(sys.stdout)
    echo.setFormatter(logging.Formatter("%(message)s"))
    worker_logger = logging.getLogger("local_endpoint.worker")
    worker_logger.addHandler(echo)
    worker_logger.propagate = False
    settings = EndpointSettings(allow_private_webhooks=args.allow_private_webhooks)
    try:
        endpoint = LocalEndpoint(
            endpoint_id=args.endpoint_id,
            workers=args.workers,
            worker_env=worker_env_from(args),
            api_key=args.api_key,
            publish_key=True,
            host=args.host,
            port=args.port,
            allowed_hosts=args.allow_host,
            settings=settings,
            retention_s=args.retention,
            sync_retention_s=args.sync_retention,
            line_sink=(lambda worker_id, line: None) if args.quiet else None,
            release_log=state_dir() / f"local-endpoint-{args.endpoint_id}-releases.json",
        )
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    return asyncio.run(serve(endpoint))
