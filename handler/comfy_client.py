"""ComfyUI's HTTP and websocket API, over one aiohttp session.

Transport failures are translated once, here, into ``ComfyRequestError``; a ``/prompt``
refusal becomes ``PromptRejected`` carrying ComfyUI's own error body. Callers never see
aiohttp exceptions.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp


class ComfyRequestError(Exception):
    """ComfyUI did not answer, or answered with an unexpected status."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class PromptRejected(Exception):
    """``POST /prompt`` answered 400: ComfyUI's validation refused the workflow."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(str(body.get("error", body)))
        self.body = body


async def loop_scoped(base_url: str) -> AsyncIterator[ComfyClient]:
    """A client that lives as long as the running event loop, keeping connections warm.

    Advance it once to get the client and keep the generator referenced: when the loop
    shuts down (``asyncio.run`` and pytest-asyncio call ``shutdown_asyncgens``), the
    generator is closed and so is the client's session.
    """
    async with ComfyClient(base_url) as client:
        yield client
        await asyncio.Event().wait()  # parked until the loop closes the generator


@dataclass(frozen=True)
class QueuedPrompt:
    prompt_id: str
    number: int
    node_errors: dict[str, Any]


class ComfyClient:
    """Async client for one ComfyUI server; use as ``async with ComfyClient(url) as c``."""

    def __init__(self, base_url: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ComfyClient:
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self

    @property
    def closed(self) -> bool:
        return self._session is None or self._session.closed

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("use ComfyClient as 'async with ComfyClient(url) as client'")
        return self._session

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        form: aiohttp.FormData | None = None,
        params: dict[str, str] | None = None,
        expect_json: bool = True,
        timeout: float | None = None,
    ) -> Any:
        url = self.base_url + path
        kwargs: dict[str, Any] = {"params": params}
        if json_body is not None:
            kwargs["json"] = json_body
        if form is not None:
            kwargs["data"] = form
        if timeout is not None:
            kwargs["timeout"] = aiohttp.ClientTimeout(total=timeout)
        try:
            async with self.session.request(method, url, **kwargs) as response:
                body = await response.read()
                if response.status == 400 and path == "/prompt":
                    raise PromptRejected(_json_or_text(body))
                if response.status >= 400:
                    raise ComfyRequestError(
                        f"{method} {path} answered {response.status}: {body[:300]!r}",
                        response.status,
                    )
                if not expect_json:
                    return body
                return json.loads(body) if body else None
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ComfyRequestError(f"{method} {path} failed: {exc!r}") from exc

    # -- routes ---------------------------------------------------------------------------

    async def system_stats(self, timeout: float | None = None) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("GET", "/system_stats", timeout=timeout)
        return result

    async def object_info(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("GET", "/object_info")
        return result

    async def folder_paths(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("GET", "/internal/folder_paths")
        return result

    async def queue_prompt(self, prompt: dict[str, Any], client_id: str, prompt_id: str) -> QueuedPrompt:
        body = {"prompt": prompt, "client_id": client_id, "prompt_id": prompt_id}
        result = await self._request("POST", "/prompt", json_body=body)
        return QueuedPrompt(
            prompt_id=str(result.get("prompt_id", prompt_id)),
            number=int(result.get("number", 0)),
            node_errors=result.get("node_errors") or {},
        )

    async def history(self, prompt_id: str) -> dict[str, Any] | None:
        """The finished prompt's history entry, or None while it is pending or running."""
        result = await self._request("GET", f"/history/{prompt_id}")
        entry = (result or {}).get(prompt_id)
        return entry if isinstance(entry, dict) else None

    async def queue(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("GET", "/queue")
        return result

    async def interrupt(self, prompt_id: str | None = None) -> None:
        body = {"prompt_id": prompt_id} if prompt_id else {}
        await self._request("POST", "/interrupt", json_body=body, expect_json=False)

    async def delete_from_queue(self, prompt_ids: list[str]) -> None:
        await self._request("POST", "/queue", json_body={"delete": prompt_ids}, expect_json=False)

    async def delete_history(self, prompt_ids: list[str]) -> None:
        await self._request("POST", "/history", json_body={"delete": prompt_ids}, expect_json=False)

    async def view(self, filename: str, subfolder: str, folder_type: str) -> bytes:
        params = {"filename": filename, "subfolder": subfolder, "type": folder_type}
        result: bytes = await self._request("GET", "/view", params=params, expect_json=False)
        return result

    async def upload_input(self, data: bytes, filename: str, subfolder: str) -> dict[str, Any]:
        """Put a file into ComfyUI's input directory (``POST /upload/image``, overwriting).

        The way to place input files when that directory is not on this machine. ComfyUI
        stores the upload as ``input/<subfolder>/<filename>``; ``filename`` has no ``/``.
        """
        form = aiohttp.FormData()
        form.add_field("image", data, filename=filename, content_type="application/octet-stream")
        form.add_field("subfolder", subfolder)
        form.add_field("type", "input")
        form.add_field("overwrite", "true")
        result: dict[str, Any] = await self._request("POST", "/upload/image", form=form)
        return result

    async def websocket(self, client_id: str, timeout: float = 30.0) -> aiohttp.ClientWebSocketResponse:
        url = self.base_url.replace("http", "ws", 1) + f"/ws?clientId={client_id}"
        try:
            async with asyncio.timeout(timeout):
                return await self.session.ws_connect(url, heartbeat=None, max_msg_size=0)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ComfyRequestError(f"websocket connect failed: {exc!r}") from exc


def _json_or_text(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except ValueError:
        return {"error": {"type": "unknown", "message": body.decode("utf-8", "replace")}}
    return parsed if isinstance(parsed, dict) else {"error": {"message": str(parsed)}}
