"""What a hostile web page in the user's browser could send: refused before any route runs.

The endpoint listens on 127.0.0.1, which every page the user opens can reach. Two checks on
every request (public and worker routes alike), answered 403:

* ``Host`` must name this machine: ``localhost``, a loopback IP, the address the endpoint
  listens on, or a name given with ``--allow-host``. A page that re-points its own domain
  at 127.0.0.1 (DNS rebinding) sends its own name and is refused.
* ``Origin``, when present (browsers send it on every POST and on cross-origin requests),
  must be the endpoint's own origin. The project's clients send none.

The public routes also take ``application/json`` bodies only (415): a cross-site
``fetch(..., {mode: "no-cors"})`` can send ``text/plain`` or a form, never JSON.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

from aiohttp import web

from custom_node.local_key import is_loopback_host
from local_endpoint.http import json_error

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})  # noqa: S104 (names, not a bind)


class HostPolicy:
    """The names a request may address this endpoint by, and the port it listens on."""

    def __init__(self, listen_host: str, extra_hosts: Iterable[str] = ()) -> None:
        names = {h.strip().lower().strip("[]") for h in extra_hosts if h.strip()}
        if listen_host not in WILDCARD_HOSTS:
            names.add(listen_host.lower().strip("[]"))
        self.names = frozenset(names)
        self.port: int | None = None  # known once listening

    def host_allowed(self, host: str) -> bool:
        return is_loopback_host(host) or host.lower().strip("[]") in self.names

    def problem(self, request: web.Request) -> str | None:
        """Why the request is refused, or None."""
        raw_host = request.headers.get("Host")
        if raw_host is not None:
            try:
                host = urlsplit(f"http://{raw_host}").hostname or ""
            except ValueError:
                host = ""
            if not self.host_allowed(host):
                return (
                    f"Host {raw_host!r} is not this machine: use 127.0.0.1 or localhost, or start "
                    "the endpoint with --allow-host NAME for a name of yours"
                )
        origin = request.headers.get("Origin")
        if origin is not None and not self._own_origin(origin):
            return f"requests from web pages ({origin!r}) are not accepted by the local endpoint"
        return None

    def _own_origin(self, origin: str) -> bool:
        try:
            parts = urlsplit(origin)
            port = parts.port
        except ValueError:
            return False
        return (
            parts.scheme == "http"
            and bool(parts.hostname)
            and self.host_allowed(parts.hostname or "")
            and port == self.port
        )

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        problem = self.problem(request)
        if problem is not None:
            return json_error(403, problem)
        return await handler(request)


def json_body_problem(request: web.Request) -> str | None:
    """Why a POST's body is refused (not ``application/json``), or None.

    A POST without a body and without a Content-Type (``/cancel``, ``/purge-queue``) passes.
    """
    content_type = request.headers.get("Content-Type")
    if content_type is None:
        if not request.body_exists:
            return None
        return "send the body as JSON with 'Content-Type: application/json'"
    if request.content_type != "application/json":
        return f"Content-Type {request.content_type!r} is not accepted: send 'application/json'"
    return None
