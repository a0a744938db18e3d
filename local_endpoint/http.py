"""Small HTTP helpers shared by the public and worker routes: JSON errors, auth, body limits."""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable
from typing import Any

from aiohttp import web

_CHUNK = 256 * 1024


def json_error(status: int, message: str) -> web.Response:
    """Every refusal is JSON (``{"error": ...}``), as RunPod's clients expect to parse it."""
    return web.json_response({"error": message}, status=status)


def key_matches(header: str | None, keys: Iterable[str], *, bearer: bool) -> bool:
    """``Authorization`` carries one of ``keys``: raw, or as ``Bearer <key>`` when ``bearer``.

    RunPod accepts both forms on the public API; the SDK's worker sends the raw key.
    """
    if not header:
        return False
    candidates = [header.strip()]
    scheme, _, rest = header.strip().partition(" ")
    if bearer and scheme.lower() == "bearer":
        candidates.append(rest.strip())
    return any(
        hmac.compare_digest(candidate.encode(), key.encode())
        for key in keys
        if key
        for candidate in candidates
    )


class BodyTooLarge(Exception):
    """The request body passed the route's size limit."""


async def read_limited(request: web.Request, limit: int) -> bytes:
    """The request body, refusing it as soon as it passes ``limit`` bytes (chunked too)."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(_CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)


def parse_json(raw: bytes) -> Any:
    """JSON of a body; ``ValueError`` (with a message for the client) when it is not JSON."""
    if not raw.strip():
        raise ValueError("the request body is empty")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"the request body is not JSON: {exc}") from None
