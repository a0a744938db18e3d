"""Webhook delivery: POST a finished job's /status body to the URL the request named.

Like RunPod: the receiver must answer 2xx; otherwise (or on a connection error or timeout)
the POST is tried again, up to ``webhook_attempts`` times in all, ``webhook_retry_delay_s``
apart. Deliveries run as background tasks so a slow receiver never delays the job API.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp

from local_endpoint.settings import EndpointSettings

log = logging.getLogger("local_endpoint.webhooks")


class WebhookSender:
    """Delivers webhooks with retries; :meth:`close` cancels deliveries still pending."""

    def __init__(self, settings: EndpointSettings) -> None:
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[bool]] = set()

    def send(self, url: str, body: dict[str, Any]) -> asyncio.Task[bool]:
        """Start delivering ``body`` to ``url``; the task's result says whether it arrived."""
        task = asyncio.get_running_loop().create_task(self._deliver(url, body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _deliver(self, url: str, body: dict[str, Any]) -> bool:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.webhook_timeout_s)
            )
        attempts = max(1, self.settings.webhook_attempts)
        for attempt in range(1, attempts + 1):
            try:
                async with self._session.post(url, json=body) as response:
                    await response.read()
                    if 200 <= response.status < 300:
                        log.info("webhook for job %s delivered to %s", body.get("id"), url)
                        return True
                    problem = f"HTTP {response.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
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

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
