"""A loopback TCP proxy that cuts chosen connections after a number of answer bytes (test support).

Why: a dropped connection in the middle of a Server-Sent Events stream is what ``--follow`` must survive
without losing or repeating a line; this makes one happen at an exact byte, with the real server behind it.
``cut_after[n]`` is how many bytes of the answer connection ``n`` (0-based) gets before both sockets close.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, field


@dataclass
class CuttingProxy:
    upstream: tuple[str, int]
    cut_after: dict[int, int] = field(default_factory=dict)
    connections: int = 0
    cuts: int = 0
    _server: socket.socket | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.getsockname()[:2]
        return f"http://{host}:{port}"

    def start(self) -> CuttingProxy:
        self._server = socket.create_server(("127.0.0.1", 0))
        threading.Thread(target=self._accept, daemon=True, name="cutting-proxy").start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    def _accept(self) -> None:
        assert self._server is not None
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            number = self.connections
            self.connections += 1
            upstream = socket.create_connection(self.upstream)
            limit = self.cut_after.get(number)
            threading.Thread(target=self._pipe, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, limit), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, limit: int | None) -> None:
        sent = 0
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if limit is not None and sent + len(data) >= limit:
                    sink.sendall(data[: limit - sent])
                    self.cuts += 1
                    break
                sink.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
