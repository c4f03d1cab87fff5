"""The lifecycle both protocol test servers share: a ThreadingHTTPServer on 127.0.0.1, port 0, in a daemon
thread, usable as a context manager. Subclasses give the request handler and may wake their waiters on stop."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class OwnedHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    owner: Any  # the test server object whose state the handler reads and records into


class ThreadedServer:
    host = "127.0.0.1"
    handler_class: type[BaseHTTPRequestHandler]

    def __init__(self) -> None:
        self._httpd: OwnedHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def _on_start(self) -> None:
        """Reset stop flags before serving (hook)."""

    def _on_stop(self) -> None:
        """Wake handlers that are waiting (long polls, delays) so shutdown does not hang (hook)."""

    def start(self) -> Self:
        if self._httpd is not None:
            return self
        self._on_start()
        httpd = OwnedHTTPServer((self.host, 0), self.handler_class)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name=type(self).__name__)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._on_stop()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._httpd.server_address[1]
