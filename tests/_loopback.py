"""Scripted HTTP servers on 127.0.0.1, for the tests that need raw HTTP the emulator does
not speak: trickled or chunked bodies, gzip, redirects to another origin. :func:`serve`
runs a handler class; :class:`Scripted` answers every request with a function and
records what was asked.

Anything that needs a WeChat token endpoint uses the emulator instead
(``wxauth.testing.FakeWeChat``, the ``wechat`` and ``fake_wechat`` fixtures).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Scripted", "serve"]


@contextlib.contextmanager
def serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Run ``handler`` on a free loopback port in a thread; yield the base URL
    (``http://127.0.0.1:PORT``). The server is stopped and closed on exit."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class Scripted(ThreadingHTTPServer):
    """A server on 127.0.0.1 whose every request is answered by ``script(handler)``.

    It records the paths it was asked for. ``stop`` is set when the test ends: scripts
    that wait or trickle watch it, and closing the server joins every handler thread."""

    daemon_threads = False  # server_close() joins the handler threads

    def __init__(self, script: Callable[[BaseHTTPRequestHandler], None]) -> None:
        super().__init__(("127.0.0.1", 0), _ScriptedHandler)
        self.script = script
        self.hits: list[str] = []
        self.stop = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ScriptedHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # a client that never sends its request does not hold the test up
    server: Scripted

    def do_GET(self) -> None:
        self._run()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._run()

    def _run(self) -> None:
        self.server.hits.append(self.path)
        with contextlib.suppress(OSError):  # the client hung up: what a deadline is for
            self.server.script(self)
        self.close_connection = True  # no keep-alive: closing the server joins at once

    def log_message(self, format: str, *args: Any) -> None:
        pass  # request lines carry the secret
