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

Its errors are in ``errors`` (``EndpointError`` and below); the rest of the job's way lives
next to it: ``job_error`` (a failed job's error), ``workflow_file`` and ``inputs`` (what is
sent), ``outputs`` (saving what comes back) and ``run`` (``run_workflow``, all of it in one call).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import aiohttp

from .errors import EndpointConfigError, EndpointHTTPError, EndpointRequestError, JobFailed, JobWaitTimeout
from .local_key import read_local_key

log = logging.getLogger("comfy_runpod.endpoint")

DEFAULT_API_BASE = "https://api.runpod.ai/v2"
FINAL_STATUSES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})
RETRY_STATUSES = frozenset({429, 502, 503, 504})
# GETs change nothing, so any 5xx is safe to retry; a POST /run that got a 500 may have queued.
RETRY_STATUSES_IDEMPOTENT = RETRY_STATUSES | {500}


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
        Raises JobFailed for FAILED/CANCELLED/TIMED_OUT and JobWaitTimeout after ``timeout_s``.
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
                raise JobWaitTimeout(f"job {job_id} still {body.get('status')} after {timeout_s:g} s")
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
