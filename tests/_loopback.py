"""A scripted HTTP server on 127.0.0.1, for the tests that need raw HTTP the emulator does
not speak: trickled or chunked bodies, gzip, redirects to another origin.

Anything that needs a WeChat token endpoint uses the emulator instead
(``wxauth.testing.FakeWeChat``, the ``wechat`` and ``fake_wechat`` fixtures).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["serve"]


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
