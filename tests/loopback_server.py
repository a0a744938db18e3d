"""A stdlib HTTP server on loopback in a daemon thread: the plumbing the RunPod emulators share.

Why: the GraphQL and REST emulators (``tests/runpod_emulator``, ``tests/runpod_rest_emulator``) are real HTTP
servers so that a Pulumi provider process, which only sees an URL, talks to them too. Starting, stopping,
reading a request body, writing an answer and taking the next injected fault are the same for both
(``LoopbackEmulator``); each
emulator keeps only what its API does with a request.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, Protocol, TypeVar


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (read timeout) closed the socket before a late answer: not an error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class LoopbackServer:
    """Serves ``serve(handler)`` for each request of the given HTTP ``methods`` on 127.0.0.1 (a free port)."""

    def __init__(
        self, serve: Callable[[BaseHTTPRequestHandler], None], *, name: str, methods: tuple[str, ...]
    ) -> None:
        def handle(handler: BaseHTTPRequestHandler) -> None:
            serve(handler)

        def log_message(handler: BaseHTTPRequestHandler, format: str, *args: Any) -> None:
            pass

        attributes: dict[str, Any] = {f"do_{method}": handle for method in methods}
        attributes["log_message"] = log_message
        handler_class = type("Handler", (BaseHTTPRequestHandler,), attributes)
        self._server = _QuietServer(("127.0.0.1", 0), handler_class)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name=name, daemon=True
        )
        self._thread.start()

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:<port>``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def read_body(handler: BaseHTTPRequestHandler) -> bytes:
    """The request's body (``Content-Length`` bytes; empty without one)."""
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


def send(handler: BaseHTTPRequestHandler, status: int, payload: bytes, headers: Mapping[str, str]) -> None:
    """Answer with ``status``, ``headers`` and ``payload`` (its ``Content-Length`` added)."""
    handler.send_response(status)
    for key, value in headers.items():
        handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)


class _Fault(Protocol):
    @property
    def operation(self) -> str | None: ...


FaultT = TypeVar("FaultT", bound=_Fault)


class _Account(Protocol):
    @property
    def lock(self) -> AbstractContextManager[Any]: ...


class LoopbackEmulator(Generic[FaultT]):
    """What both emulators do besides answering: stop, take injected faults in order, list the requests'
    operations. Mixed into their dataclasses, which declare these attributes as fields."""

    account: _Account
    faults: list[FaultT]
    requests: list[Any]  # each with an ``operation``
    _server: LoopbackServer | None

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def inject(self, *faults: FaultT) -> None:
        with self.account.lock:
            self.faults.extend(faults)

    def operations(self) -> list[str | None]:
        return [r.operation for r in self.requests]

    def _take_fault(self, operation: str | None) -> FaultT | None:
        """Remove and return the first injected fault for ``operation`` (a fault for None matches any)."""
        with self.account.lock:
            for i, fault in enumerate(self.faults):
                if fault.operation is None or fault.operation == operation:
                    return self.faults.pop(i)
        return None
