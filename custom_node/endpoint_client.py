"""One client for RunPod's serverless job API (``/v2/{endpoint_id}/...``).

Used by ``tasks.py`` from the terminal and by this custom node's routes inside ComfyUI, so it
depends on the standard library and aiohttp only: aiohttp is ComfyUI's own web framework, so
it is present in every ComfyUI install this folder may be copied into, while httpx is not.

    async with EndpointClient.from_env() as client:
        job = await client.run({"workflow": workflow})
        final = await client.wait(job["id"], timeout=600)

The base URL is ``https://api.runpod.ai/v2/<endpoint id>``, or ``RUNPOD_ENDPOINT_URL``
(e.g. the local endpoint, ``http://127.0.0.1:8000/v2/local``). The API key comes from
``RUNPOD_API_KEY``, or for a local endpoint on loopback that made its own key, from the key
file it wrote (``local_key``); it is sent as ``Authorization: Bearer``; it is never logged or shown.

Errors::

    EndpointError                 base class
    ├── EndpointConfigError       no endpoint id / URL configured
    ├── EndpointRequestError      the API could not be reached (after retries)
    ├── EndpointHTTPError         the API answered 4xx/5xx (``status``, ``body``)
    └── JobFailed                 the job ended FAILED / CANCELLED / TIMED_OUT (``job``, ``error``)
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any

import aiohttp

from .local_key import read_local_key

log = logging.getLogger("comfy_runpod.endpoint")

DEFAULT_API_BASE = "https://api.runpod.ai/v2"
FINAL_STATUSES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})
RETRY_STATUSES = frozenset({429, 502, 503, 504})
# GETs change nothing, so any 5xx is safe to retry; a POST /run that got a 500 may have queued.
RETRY_STATUSES_IDEMPOTENT = RETRY_STATUSES | {500}


class EndpointError(Exception):
    """Base class of the endpoint client's errors."""


class EndpointConfigError(EndpointError):
    """The endpoint is not configured (no id, no URL)."""


class EndpointRequestError(EndpointError):
    """The job API could not be reached."""


class EndpointHTTPError(EndpointError):
    """The job API answered with an error status."""

    def __init__(self, operation: str, status: int, body: Any) -> None:
        detail = body.get("error") if isinstance(body, dict) else body
        super().__init__(f"{operation} answered HTTP {status}: {str(detail)[:300]}")
        self.operation = operation
        self.status = status
        self.body = body


class JobFailed(EndpointError):
    """The job ended without completing; ``error`` is the worker's structured error."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        self.error = decode_job_error(job.get("error"))
        super().__init__(f"job {job.get('id')} {job.get('status')}: {self.error.get('message')}")


def decode_job_error(raw: Any) -> dict[str, Any]:
    """The worker's ``{code, message, details, diagnostics}`` from a job's ``error``.

    The SDK sends it as a JSON string; anything else (a platform error, an SDK traceback
    dict) is wrapped so callers can always read ``code`` and ``message``.
    """
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
        except ValueError:
            return {"code": "ERROR", "message": raw, "details": [], "diagnostics": {}}
        raw = parsed
    if isinstance(raw, dict):
        if "code" in raw and "message" in raw:
            return {"details": [], "diagnostics": {}, **raw}
        if "error_message" in raw:  # the SDK's own format for an exception in a handler
            return {
                "code": str(raw.get("error_type", "ERROR")),
                "message": str(raw["error_message"]),
                "details": [],
                "diagnostics": {"traceback": raw.get("error_traceback")},
            }
    return {
        "code": "ERROR",
        "message": str(raw) if raw else "no error message",
        "details": [],
        "diagnostics": {},
    }


def format_error(error: Mapping[str, Any], log_lines: int = 15) -> str:
    """A structured job error as text a person can act on."""
    lines = [f"{error.get('code', 'ERROR')}: {error.get('message', '')}"]
    for detail in error.get("details") or []:
        if not isinstance(detail, dict):
            lines.append(f"  - {detail}")
            continue
        where = " ".join(
            part
            for part in (
                f"node {detail['node_id']}" if detail.get("node_id") else "",
                f"({detail['class_type']})" if detail.get("class_type") else "",
                f"input {detail['input']}" if detail.get("input") else "",
                f"field {detail['field']}" if detail.get("field") else "",
            )
            if part
        )
        text = detail.get("message", "")
        lines.append(f"  - {where + ': ' if where else ''}{text}")
        if detail.get("fix"):
            lines.append(f"      fix: {detail['fix']}")
        if detail.get("closest"):
            lines.append(f"      closest available: {', '.join(map(str, detail['closest']))}")
        if detail.get("exception_type"):
            lines.append(f"      {detail['exception_type']}")
    tail = (error.get("diagnostics") or {}).get("log_tail") or []
    if tail:
        lines.append(f"last {min(len(tail), log_lines)} ComfyUI log lines:")
        lines.extend(f"  | {line}" for line in tail[-log_lines:])
    return "\n".join(lines)


def endpoint_url(endpoint_id: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """The job API base URL: ``RUNPOD_ENDPOINT_URL``, else RunPod's URL for the endpoint id."""
    env = os.environ if env is None else env
    override = env.get("RUNPOD_ENDPOINT_URL", "").strip()
    if override:
        return override.rstrip("/")
    endpoint_id = endpoint_id or env.get("RUNPOD_ENDPOINT_ID", "").strip()
    if not endpoint_id:
        raise EndpointConfigError(
            "no endpoint: set RUNPOD_ENDPOINT_ID (or pass --endpoint), or RUNPOD_ENDPOINT_URL "
            "for the local endpoint (e.g. http://127.0.0.1:8000/v2/local)"
        )
    return f"{DEFAULT_API_BASE}/{endpoint_id}"


@dataclass
class RetryPolicy:
    """Backoff for refused or failed requests: exponential with jitter, honouring Retry-After."""

    attempts: int = 5
    base_s: float = 0.5
    max_s: float = 20.0

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        if retry_after:
            try:
                return min(float(retry_after), self.max_s)
            except ValueError:
                pass
        backoff: float = min(self.base_s * 2**attempt, self.max_s)
        return backoff * (0.5 + random.random() / 2)  # noqa: S311


@dataclass
class EndpointClient:
    """Async client for one endpoint's job API; use as ``async with``."""

    url: str
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 30.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    _session: aiohttp.ClientSession | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_env(
        cls, endpoint_id: str | None = None, env: Mapping[str, str] | None = None, **kwargs: Any
    ) -> EndpointClient:
        env = os.environ if env is None else env
        url = endpoint_url(endpoint_id, env)
        return cls(url, read_local_key(url, env) or env.get("RUNPOD_API_KEY") or None, **kwargs)

    async def __aenter__(self) -> EndpointClient:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self._session = aiohttp.ClientSession(
            headers=headers, timeout=aiohttp.ClientTimeout(total=self.timeout_s)
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- operations -------------------------------------------------------------------------

    async def run(self, job_input: dict[str, Any], **options: Any) -> dict[str, Any]:
        """Queue a job (``POST /run``); ``options``: webhook, policy, s3Config."""
        return await self._call("POST", "/run", {"input": job_input, **options}, idempotent=False)

    async def runsync(
        self, job_input: dict[str, Any], wait_ms: int | None = None, **options: Any
    ) -> dict[str, Any]:
        """Run and wait up to ``wait_ms`` (RunPod: 1000..300000, default 90 s)."""
        params = {"wait": str(wait_ms)} if wait_ms else None
        timeout = (wait_ms or 90_000) / 1000 + 30
        return await self._call(
            "POST",
            "/runsync",
            {"input": job_input, **options},
            idempotent=False,
            params=params,
            timeout=timeout,
        )

    async def status(self, job_id: str) -> dict[str, Any]:
        return await self._call("GET", f"/status/{job_id}")

    async def stream(self, job_id: str) -> dict[str, Any]:
        return await self._call("GET", f"/stream/{job_id}")

    async def cancel(self, job_id: str) -> dict[str, Any]:
        return await self._call("POST", f"/cancel/{job_id}", idempotent=True)

    async def retry_job(self, job_id: str) -> dict[str, Any]:
        return await self._call("POST", f"/retry/{job_id}", idempotent=False)

    async def purge_queue(self) -> dict[str, Any]:
        return await self._call("POST", "/purge-queue", idempotent=False)

    async def health(self) -> dict[str, Any]:
        return await self._call("GET", "/health")

    async def wait(
        self,
        job_id: str,
        *,
        timeout_s: float,
        on_status: Callable[[dict[str, Any]], Awaitable[None] | None] | None = None,
        first_poll_s: float = 0.05,
        max_poll_s: float = 2.0,
    ) -> dict[str, Any]:
        """Poll ``/status`` until the job ends; returns the final status body.

        Polls start fast (short jobs return quickly) and back off to ``max_poll_s``.
        Raises JobFailed for FAILED/CANCELLED/TIMED_OUT and TimeoutError after ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        delay = first_poll_s
        while True:
            body = await self.status(job_id)
            if on_status is not None:
                maybe = on_status(body)
                if asyncio.iscoroutine(maybe):
                    await maybe
            if body.get("status") in FINAL_STATUSES:
                if body["status"] != "COMPLETED":
                    raise JobFailed(body)
                return body
            if time.monotonic() + delay > deadline:
                raise TimeoutError(f"job {job_id} still {body.get('status')} after {timeout_s:g} s")
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, max_poll_s)

    # -- transport --------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        idempotent: bool = True,
        params: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        if self._session is None:
            raise RuntimeError("use the client as 'async with EndpointClient(...) as client'")
        operation = f"{method} {path.split('/')[1]}"
        retry_on = RETRY_STATUSES_IDEMPOTENT if idempotent else RETRY_STATUSES
        kwargs: dict[str, Any] = {"params": params}
        if body is not None:
            kwargs["json"] = body
        if timeout is not None:
            kwargs["timeout"] = aiohttp.ClientTimeout(total=timeout)
        for attempt in range(self.retry.attempts):
            last = attempt == self.retry.attempts - 1
            try:
                async with self._session.request(method, self.url + path, **kwargs) as response:
                    text = await response.text()
                    payload = _json_or_text(text)
                    if response.status < 400:
                        return payload if isinstance(payload, dict) else {"result": payload}
                    if response.status in retry_on and not last:
                        delay = self.retry.delay(attempt, response.headers.get("Retry-After"))
                        log.info("%s answered %d; retrying in %.1f s", operation, response.status, delay)
                        await asyncio.sleep(delay)
                        continue
                    raise EndpointHTTPError(operation, response.status, payload)
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                # A connection that never opened sent nothing, so even /run may be retried.
                never_sent = isinstance(exc, aiohttp.ClientConnectorError)
                if last or not (idempotent or never_sent):
                    reason = (
                        exc.os_error.strerror or str(exc.os_error)
                        if isinstance(exc, aiohttp.ClientConnectorError)
                        else "timed out"
                        if isinstance(exc, TimeoutError)
                        else str(exc) or type(exc).__name__
                    )
                    raise EndpointRequestError(f"{operation}: cannot reach {self.url} ({reason})") from None
                await asyncio.sleep(self.retry.delay(attempt))
        raise AssertionError("unreachable")  # pragma: no cover


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text) if text else {}
    except ValueError:
        return text


# -- workflows --------------------------------------------------------------------------------


def load_workflow(path: Path) -> dict[str, Any]:
    """An API-format workflow from a file; a UI-format file is refused with the export hint."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EndpointError(f"cannot read workflow {path}: {exc}") from None
    if isinstance(data, dict) and "nodes" in data and "links" in data:
        raise EndpointError(
            f"{path} is a UI-format workflow; in ComfyUI use Workflow > Export (API) and send that file"
        )
    if not isinstance(data, dict) or not data:
        raise EndpointError(f"{path} is not an API-format workflow (an object of nodes)")
    return data


def input_files(specs: list[str], base: Path | None = None) -> list[dict[str, str]]:
    """``images`` entries for the job input from ``name=path`` or ``path`` specs.

    Without ``name=``, the name is the path relative to ``base`` (default: the current
    directory) when it lies inside it, else the file name; subfolders are kept.
    """
    base = (base or Path.cwd()).resolve()
    entries = []
    for spec in specs:
        name, sep, raw = spec.partition("=")
        path = Path(raw if sep else spec).expanduser()
        if not path.is_absolute():
            path = base / path
        if not sep:
            resolved = path.resolve()
            name = resolved.relative_to(base).as_posix() if resolved.is_relative_to(base) else path.name
        if not path.is_file():
            raise EndpointError(f"input file {path} does not exist")
        entries.append({"name": name, "image": base64.b64encode(path.read_bytes()).decode("ascii")})
    return entries


def _safe_relative(*parts: str) -> PurePosixPath:
    """Join server-provided path parts, refusing anything that could leave the output folder."""
    joined = PurePosixPath(*[p for p in parts if p])
    if joined.is_absolute() or any(p in ("..", "") for p in joined.parts) or "\\" in str(joined):
        raise EndpointError(f"refusing to save an output named {str(joined)!r}")
    return joined


async def save_outputs(
    output: dict[str, Any], folder: Path, session: aiohttp.ClientSession | None = None
) -> list[Path]:
    """Write every output of a completed job under ``folder``, keeping subfolders.

    Base64 outputs are decoded; URL outputs are downloaded; text outputs become
    ``<node id>.txt``. Returns the files written.
    """
    written: list[Path] = []
    own_session = session is None
    session = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600))
    try:
        for entry in output.get("outputs") or []:
            if entry.get("kind") == "text" and "text" in entry:
                target = folder / _safe_relative(f"{entry.get('node_id', 'text')}.txt")
                data = str(entry["text"]).encode("utf-8")
            else:
                target = folder / _safe_relative(str(entry.get("subfolder") or ""), str(entry["filename"]))
                if "data" in entry:
                    data = base64.b64decode(entry["data"])
                elif "url" in entry:
                    async with session.get(entry["url"]) as response:
                        response.raise_for_status()
                        data = await response.read()
                else:
                    continue
            # Off the event loop: inside ComfyUI this loop also serves the UI.
            await asyncio.to_thread(_write_file, target, data)
            written.append(target)
    finally:
        if own_session:
            await session.close()
    return written


def _write_file(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


@dataclass
class WorkflowRun:
    """The outcome of ``run_workflow``: the final job body and the files saved."""

    job: dict[str, Any]
    files: list[Path]


async def run_workflow(
    client: EndpointClient,
    workflow: dict[str, Any],
    *,
    images: list[dict[str, str]] | None = None,
    out_dir: Path,
    timeout_s: float = 3600.0,
    on_status: Callable[[dict[str, Any]], Awaitable[None] | None] | None = None,
    **job_options: Any,
) -> WorkflowRun:
    """Submit a workflow, follow it, and save its outputs under ``out_dir/<job id>/``."""
    job_input: dict[str, Any] = {"workflow": workflow}
    if images:
        job_input["images"] = images
    queued = await client.run(job_input, **job_options)
    final = await client.wait(queued["id"], timeout_s=timeout_s, on_status=on_status)
    files = await save_outputs(final.get("output") or {}, out_dir / str(queued["id"]))
    return WorkflowRun(final, files)
