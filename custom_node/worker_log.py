"""A worker's recent log lines, read on the ComfyUI server for the overlay's "Worker log" button.

Why here, with aiohttp, and not through ``infra.runpod_rest`` (the project's REST v2 client): this folder
must work copied alone into a ComfyUI (standard library, aiohttp and itself: an import contract), and the
key must stay on the server. So this is one read-only call of RunPod's REST API v2, ``getWorkerLogs``
(``GET /v2/serverless/{id}/workers/{workerId}/logs?tail=N``, Server-Sent Events), made the same way
against RunPod and against the local endpoint, which serves the same path for its workers:

- the REST base URL comes from the configured job-API URL: ``https://api.runpod.ai/v2/<id>`` means
  ``https://api.runpod.io`` (``RUNPOD_REST_URL`` overrides it), ``http://127.0.0.1:8000/v2/local`` means
  ``http://127.0.0.1:8000``; the endpoint id is the URL's last segment;
- the key goes in the ``Authorization`` header only;
- RunPod's stream stays open after the backfill, so reading stops after ``idle_s`` without a new event
  (or ``max_s`` in all). Only complete events (ended by a blank line) are kept.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp

from .config import RunPodConfig

RUNPOD_REST = "https://api.runpod.io"
MAX_TAIL = 5000


class WorkerLogError(Exception):
    """The log could not be read; ``status`` is RunPod's HTTP status (0: not reached)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def rest_target(job_url: str, env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """``(REST base URL, endpoint id)`` for a job-API URL (see the module docstring)."""
    env = os.environ if env is None else env
    parts = urlsplit(job_url)
    endpoint_id = parts.path.rstrip("/").rsplit("/", 1)[-1]
    if env.get("RUNPOD_REST_URL"):
        return env["RUNPOD_REST_URL"].rstrip("/"), endpoint_id
    if parts.hostname == "api.runpod.ai":
        return RUNPOD_REST, endpoint_id
    return f"{parts.scheme}://{parts.netloc}", endpoint_id


def parse_events(text: str) -> list[dict[str, str]]:
    """The complete SSE events of ``text`` as ``{ts, source, line}`` (a cut-off last event is dropped)."""
    events: list[dict[str, str]] = []
    for block in text.replace("\r\n", "\n").split("\n\n")[:-1]:
        data = "\n".join(line[5:].removeprefix(" ") for line in block.split("\n") if line.startswith("data:"))
        if not data:
            continue
        try:
            payload = json.loads(data)
        except ValueError:
            payload = {"line": data}
        if isinstance(payload, dict):
            events.append(
                {
                    "ts": str(payload.get("ts") or ""),
                    "source": str(payload.get("source") or "container"),
                    "line": str(payload.get("line") or ""),
                }
            )
    return events


def _refusal(status: int, body: str) -> str:
    try:
        problem = json.loads(body)
        detail = str(problem.get("detail") or problem.get("title") or problem.get("error") or "")
    except (ValueError, AttributeError):
        detail = body[:200]
    hint = {
        401: "the API key was refused",
        403: "the API key may not read worker logs (give it read access to Serverless)",
        404: "the worker is gone (RunPod keeps logs of running workers only)",
        429: "rate limited by RunPod; try again in a minute",
    }.get(status, f"HTTP {status}")
    return f"{hint}: {detail}" if detail else hint


#: What one fetch reads at most (it runs on ComfyUI's event loop): a log's tail, and an error's body.
MAX_LOG_BYTES = 1024 * 1024
MAX_ERROR_BYTES = 4096


async def recent_worker_log(
    config: RunPodConfig,
    worker_id: str,
    *,
    tail: int = 200,
    idle_s: float = 2.0,
    max_s: float = 10.0,
    env: Mapping[str, str] | None = None,
) -> list[dict[str, str]]:
    """The worker's last ``tail`` lines (oldest first); ``WorkerLogError`` with one line otherwise."""
    if not config.url or not config.api_key:
        raise WorkerLogError(0, "no endpoint or API key configured")
    base, endpoint_id = rest_target(config.url, env)
    url = f"{base}/v2/serverless/{quote(endpoint_id, safe='')}/workers/{quote(worker_id, safe='')}/logs"
    headers = {"Authorization": f"Bearer {config.api_key}", "Accept": "text/event-stream"}
    params = {"tail": str(max(0, min(tail, MAX_TAIL)))}
    received = bytearray()
    deadline = time.monotonic() + max_s
    try:
        timeout = aiohttp.ClientTimeout(total=max_s + 5, sock_connect=5)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, headers=headers, params=params) as response,
        ):
            if response.status != 200:
                body = (await response.content.read(MAX_ERROR_BYTES)).decode("utf-8", "replace")
                raise WorkerLogError(response.status, _refusal(response.status, body))
            while time.monotonic() < deadline and len(received) < MAX_LOG_BYTES:
                wait = min(idle_s, max(0.0, deadline - time.monotonic()))
                try:
                    chunk = await asyncio.wait_for(response.content.readany(), wait)
                except TimeoutError:
                    break
                if not chunk:
                    break
                received += chunk
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise WorkerLogError(0, f"cannot reach {base}: {type(exc).__name__}") from None
    # A cut at the cap may end mid-event: parse_events keeps complete events only.
    return parse_events(bytes(received[:MAX_LOG_BYTES]).decode("utf-8", "replace"))


def worker_log_answer(job_id: str, worker_id: str, events: list[dict[str, str]]) -> dict[str, Any]:
    """The route's JSON: the lines, and which of them name the job (the handler's lines carry its id)."""
    return {
        "id": job_id,
        "worker_id": worker_id,
        "lines": [
            {"ts": e["ts"], "source": e["source"], "line": e["line"], "job": job_id in e["line"]}
            for e in events
        ],
    }
