"""What the worker adds on top of ComfyUI: per-job overhead, readiness detection, cold start.

Prints the parameters, then one line::

    handler_overhead_p50_ms=… bare_overhead_p50_ms=… ratio=… ready_detect_ms=… cold_start_overhead_ms=…

- overhead = job wall time - ComfyUI's execution time (its execution_start -> execution_success
  timestamps), for the handler (attach mode, validation and progress on) and for a bare client
  doing the minimum (POST /prompt, wait on the websocket, /history, /view, base64), run
  alternately against the same ComfyUI;
- ready_detect_ms = when the supervisor noticed readiness - when the stand-in started listening;
- cold_start_overhead_ms = (worker process start -> ready for jobs) - (ComfyUI alone: process
  start -> /system_stats answers), with the stand-in's boot delayed to stand for a real boot.

ComfyUI is the project's stand-in (spawned as a process) unless ``COMFYUI_URL`` names a real
one; readiness and cold start always use the stand-in, whose boot delay is known.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from comfyui_standin import spawn_mode_env  # noqa: E402
from handler.settings import Settings  # noqa: E402
from handler.supervisor import ComfyProcess  # noqa: E402

WORKFLOW: dict[str, Any] = {
    "1": {
        "class_type": "EmptyImage",
        "inputs": {"width": 512, "height": 512, "batch_size": 1, "color": 3368703},
    },
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "bench/out"}},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def stamps_execution_s(history_entry: dict[str, Any]) -> float:
    stamps = {name: int(data["timestamp"]) for name, data in history_entry["status"]["messages"]}
    return (stamps["execution_success"] - stamps["execution_start"]) / 1000


def start_standin(root: Path, boot_delay: float = 0.0) -> ComfyProcess:
    """The stand-in as ComfyUI's main.py, started by the worker's supervisor and ready.

    Readiness is polled every millisecond, like an eager client would: ``ready_at -
    started_at`` is then ComfyUI's own boot (process start -> ``/system_stats`` answers).
    """
    env = {**spawn_mode_env(root, free_port()), "COMFYUI_READY_POLL": "0.001"}
    os.environ["STANDIN_BOOT_DELAY_S"] = str(boot_delay)  # ComfyUI inherits the environment
    try:
        comfy = ComfyProcess(Settings.from_env(env))
        comfy.start()
        comfy.ensure_ready(60)
    finally:
        del os.environ["STANDIN_BOOT_DELAY_S"]
    return comfy


async def bare_job(url: str) -> tuple[float, float]:
    """The minimum client: returns (wall s, ComfyUI execution s)."""
    import aiohttp

    workflow = json.loads(json.dumps(WORKFLOW))
    workflow["3"]["inputs"]["filename_prefix"] = f"bare/{uuid.uuid4().hex}/out"
    client_id = uuid.uuid4().hex
    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{url.replace('http', 'ws', 1)}/ws?clientId={client_id}") as ws:
            async with session.post(f"{url}/prompt", json={"prompt": workflow, "client_id": client_id}) as r:
                prompt_id = (await r.json())["prompt_id"]
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(message.data)
                if (
                    data["type"] == "executing"
                    and data["data"].get("node") is None
                    and data["data"].get("prompt_id") == prompt_id
                ):
                    break
        async with session.get(f"{url}/history/{prompt_id}") as r:
            entry = (await r.json())[prompt_id]
        for output in entry["outputs"].values():
            for image in output.get("images", []):
                async with session.get(f"{url}/view", params=image) as r:
                    base64.b64encode(await r.read())
    return time.perf_counter() - started, stamps_execution_s(entry)


async def handler_job(handler: Any, index: int) -> tuple[float, float]:
    started = time.perf_counter()
    result = await handler({"id": f"bench-{index}", "input": {"workflow": WORKFLOW}})
    wall = time.perf_counter() - started
    if "error" in result:
        raise RuntimeError(result["error"])
    return wall, float(result["timings"]["execution_s"])


def measure_overhead(url: str, io: Path | None, jobs: int, warmup: int) -> tuple[list[float], list[float]]:
    os.environ["COMFYUI_URL"] = url
    if io is not None:
        os.environ["COMFYUI_INPUT_DIR"] = str(io / "input")
        os.environ["COMFYUI_OUTPUT_DIR"] = str(io / "output")
    os.environ.setdefault("COMFY_RUNPOD_LOG_LEVEL", "WARNING")
    from handler.handler import handler

    handler_ms: list[float] = []
    bare_ms: list[float] = []

    async def run() -> None:
        for i in range(warmup + jobs):
            wall, execution = await handler_job(handler, i)
            if i >= warmup:
                handler_ms.append((wall - execution) * 1000)
            wall, execution = await bare_job(url)
            if i >= warmup:
                bare_ms.append((wall - execution) * 1000)

    asyncio.run(run())
    return handler_ms, bare_ms


def measure_ready_detect(root: Path, repeats: int) -> list[float]:
    """ms between the stand-in listening and ComfyProcess noticing it."""
    results: list[float] = []
    for i in range(repeats):
        comfy = ComfyProcess(Settings.from_env(spawn_mode_env(root / f"ready-{i}", free_port())))
        comfy.start()
        try:
            comfy.ensure_ready(60)
            time.sleep(0.2)  # let the log pump catch up
            listening = next(
                float(line.rsplit(" ", 1)[1])
                for line in comfy.log_tail()
                if line.startswith("standin: listening at")
            )
            assert comfy.ready_at is not None
            results.append((comfy.ready_at - listening) * 1000)
        finally:
            comfy.shutdown()
    return results


def measure_cold_start(root: Path, boot_delay: float, repeats: int) -> list[float]:
    results: list[float] = []
    for i in range(repeats):
        alone = start_standin(root / f"alone-{i}", boot_delay)
        alone.shutdown()
        assert alone.ready_at is not None and alone.started_at is not None
        comfy_alone = alone.ready_at - alone.started_at

        env = {
            **os.environ,
            **spawn_mode_env(root / f"worker-{i}", free_port()),
            "STANDIN_BOOT_DELAY_S": str(boot_delay),
        }
        env.pop("COMFYUI_URL", None)
        started = time.time()
        worker = subprocess.Popen(
            [sys.executable, "-u", "handler/handler.py"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            assert worker.stdout is not None
            for line in worker.stdout:
                if line.startswith("comfy-runpod: ready for jobs at"):
                    ready = float(line.rsplit(" ", 1)[1])
                    break
            else:
                raise RuntimeError("the worker exited before it was ready")
        finally:
            worker.terminate()
            worker.wait(10)
        results.append(((ready - started) - comfy_alone) * 1000)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=40, help="measured jobs per client")
    parser.add_argument("--warmup", type=int, default=3, help="discarded jobs per client")
    parser.add_argument(
        "--boot-delay", type=float, default=5.0, help="stand-in boot delay for the cold start (s)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="cold start and readiness repetitions")
    parser.add_argument("--output-json", type=Path, help="write raw samples and the summary here")
    args = parser.parse_args()
    url = os.environ.get("COMFYUI_URL")
    print(
        f"# jobs={args.jobs} warmup={args.warmup} boot_delay_s={args.boot_delay} repeats={args.repeats} "
        f"comfyui={url or 'stand-in process'}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cold = measure_cold_start(root, args.boot_delay, args.repeats)
        ready = measure_ready_detect(root, args.repeats * 2)
        if url:
            handler_ms, bare_ms = measure_overhead(url, None, args.jobs, args.warmup)
        else:
            server = start_standin(root / "overhead")
            try:
                io = root / "overhead" / "io"
                handler_ms, bare_ms = measure_overhead(server.base_url, io, args.jobs, args.warmup)
            finally:
                server.shutdown()
    summary = {
        "handler_overhead_p50_ms": statistics.median(handler_ms),
        "bare_overhead_p50_ms": statistics.median(bare_ms),
        "ratio": statistics.median(handler_ms) / statistics.median(bare_ms),
        "ready_detect_ms": statistics.median(ready),
        "cold_start_overhead_ms": statistics.median(cold),
        "handler_overhead_p90_ms": percentile(handler_ms, 90),
        "bare_overhead_p90_ms": percentile(bare_ms, 90),
    }
    if args.output_json:
        args.output_json.write_text(
            json.dumps(
                {
                    "summary": summary,
                    "handler_ms": handler_ms,
                    "bare_ms": bare_ms,
                    "ready_ms": ready,
                    "cold_ms": cold,
                },
                indent=2,
            )
        )
    print(
        " ".join(
            f"{k}={summary[k]:.2f}"
            for k in (
                "handler_overhead_p50_ms",
                "bare_overhead_p50_ms",
                "ratio",
                "ready_detect_ms",
                "cold_start_overhead_ms",
            )
        )
    )


if __name__ == "__main__":
    main()
