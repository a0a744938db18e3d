"""Webhook delivery: POST a finished job's /status body to the URL the request named.

Like RunPod: the receiver must answer 2xx; otherwise (or on a connection error or timeout)
the POST is tried again, up to ``webhook_attempts`` times in all, ``webhook_retry_delay_s``
apart. Deliveries run as background tasks so a slow receiver never delays the job API.

A webhook carries a job's outputs, so it may only go where the worker may fetch input URLs
from: the worker's address policy (``handler.input_files``, imported, not copied) checks the
addresses actually connected to, and redirects are not followed (a 3xx is a failed attempt),
unless ``allow_private_webhooks``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp

from handler.input_files import PublicOnlyResolver
from local_endpoint.settings import EndpointSettings

log = logging.getLogger("local_endpoint.webhooks")


class WebhookSender:
    """Delivers webhooks with retries; :meth:`close` cancels deliveries still pending."""

    def __init__(self, settings: EndpointSettings) -> None:
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None
        self._resolver: PublicOnlyResolver | None = None
        self._tasks: set[asyncio.Task[bool]] = set()

    def send(self, url: str, body: dict[str, Any]) -> asyncio.Task[bool]:
        """Start delivering ``body`` to ``url``; the task's result says whether it arrived."""
        task = asyncio.get_running_loop().create_task(self._deliver(url, body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _deliver(self, url: str, body: dict[str, Any]) -> bool:
        if self._session is None:
            if not self.settings.allow_private_webhooks:
                self._resolver = PublicOnlyResolver()
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=self._resolver, use_dns_cache=False),
                timeout=aiohttp.ClientTimeout(total=self.settings.webhook_timeout_s),
            )
        attempts = max(1, self.settings.webhook_attempts)
        for attempt in range(1, attempts + 1):
            try:
                async with self._session.post(url, json=body, allow_redirects=False) as response:
                    await response.read()
                    if 200 <= response.status < 300:
                        log.info("webhook for job %s delivered to %s", body.get("id"), url)
                        return True
                    problem = f"HTTP {response.status}"
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                cause = getattr(exc, "os_error", None)  # e.g. the address policy's refusal
                problem = f"{type(exc).__name__}: {cause or exc}"
            log.warning(
                "webhook for job %s to %s failed (attempt %d of %d): %s",
                body.get("id"),
                url,
                attempt,
                attempts,
                problem,
            )
            if attempt < attempts:
                await asyncio.sleep(self.settings.webhook_retry_delay_s)
        return False

    @property
    def pending(self) -> int:
        """Deliveries not finished yet (being tried, or waiting to be tried again)."""
        return len(self._tasks)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._resolver is not None:
            await self._resolver.close()  # the connector closes only resolvers it made itself
            self._resolver = None
