"""Front end 2: the emulator as a real HTTP server on loopback (stdlib only).

One :class:`EmulatorServer` serves WeChat and WeCom paths on one base URL, from a
``ThreadingHTTPServer`` running in a daemon thread, so any process on the machine can use
it: pass the URL as ``api_base``. The request log is silent by default; with ``log=`` it
writes request lines with ``secret``, ``corpsecret``, ``appsecret`` and ``access_token``
values masked (the stable_token body, which carries the secret, is never logged).
"""

from __future__ import annotations

import contextlib
import re
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO, cast

from ._fake import Request

if TYPE_CHECKING:
    from ._fake import FakeWeChat

__all__ = ["EmulatorServer", "redact_target"]

#: The largest request body the server reads (WeChat's token requests are tiny).
_MAX_BODY = 1024 * 1024

_DIGITS = re.compile(r"[0-9]+")
_SECRET_PARAM = re.compile(
    r"(?<=[?&])(secret|corpsecret|appsecret|access_token|component_access_token)=[^&\s]*"
)


def redact_target(target: str) -> str:
    """Mask secret and token values in a request target or request line."""
    return _SECRET_PARAM.sub(r"\1=***", target)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # Many client threads connect at once in concurrency tests.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], fake: FakeWeChat, log: TextIO | None) -> None:
        super().__init__(address, _Handler)
        self.fake = fake
        self.log = log
        self.stopping = threading.Event()
        # Open connections, and those in the middle of an answer: on stop, idle
        # keep-alive connections are shut so no pooled client reaches a stopped server.
        self._connections: set[socket.socket] = set()
        self._busy: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = super().get_request()
        with self._connections_lock:
            self._connections.add(connection)
        return connection, address

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
            self._busy.discard(request)
        super().shutdown_request(request)

    def set_busy(self, connection: socket.socket, busy: bool) -> None:
        with self._connections_lock:
            if busy:
                self._busy.add(connection)
            else:
                self._busy.discard(connection)

    def drop_idle_connections(self) -> None:
        with self._connections_lock:
            idle = self._connections - self._busy
        for connection in idle:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out and hung up mid-answer is expected, not an error.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "wxauth-emulator"
    sys_version = ""
    # One buffered write per answer, sent without Nagle: otherwise every keep-alive
    # request waits ~40 ms for a delayed ACK.
    wbufsize = -1
    disable_nagle_algorithm = True

    def _answer(self) -> None:
        server = cast(_HTTPServer, self.server)
        server.set_busy(self.connection, True)
        try:
            self._reply(server)
        finally:
            if server.stopping.is_set():
                self.close_connection = True
            server.set_busy(self.connection, False)

    def _body_length(self) -> int | None:
        """The declared body length, or ``None`` when it is malformed, ambiguous or
        over 1 MiB."""
        values = self.headers.get_all("Content-Length") or []
        if not values:
            return 0
        lengths = {value.strip() for value in values}
        if len(lengths) != 1:
            return None
        (text,) = lengths
        if not _DIGITS.fullmatch(text) or len(text) > 9:
            return None
        length = int(text)
        return length if length <= _MAX_BODY else None

    def _refuse(self, reason: str) -> None:
        """Answer 400 and close: a body of unknown length cannot be skipped."""
        self.close_connection = True
        body = f"400 Bad Request: {reason}\n".encode()
        self.send_response(400)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _reply(self, server: _HTTPServer) -> None:
        length = self._body_length()
        if length is None:
            self._refuse(f"Content-Length must be one number of bytes up to {_MAX_BODY}")
            return
        body = self.rfile.read(length) if length > 0 else b""
        request = Request.from_target(self.command, self.path, body, self.client_address[0])
        reply = server.fake.handle(request)
        if reply.delay > 0:
            server.stopping.wait(reply.delay)
        if reply.hang is not None:
            server.stopping.wait(reply.hang)
            # The client has most likely given up; do not keep the connection.
            self.close_connection = True
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(reply.body)

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def do_PUT(self) -> None:
        self._answer()

    def do_DELETE(self) -> None:
        self._answer()

    def do_PATCH(self) -> None:
        self._answer()

    def log_message(self, format: str, *args: Any) -> None:
        log = cast(_HTTPServer, self.server).log
        if log is not None:
            line = format % args
            log.write(f"{self.address_string()} {redact_target(line)}\n")
            log.flush()


class EmulatorServer:
    """Serve a :class:`FakeWeChat` over HTTP on ``host:port`` (``port=0``: a free port).

    Use as a context manager (starts a background thread), or call :meth:`serve_forever`
    in the current thread. :meth:`stop` (or ``fake.close()``) releases hanging requests
    and shuts the server down.
    """

    def __init__(
        self,
        fake: FakeWeChat,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        log: TextIO | None = None,
    ) -> None:
        self.fake = fake
        self._httpd = _HTTPServer((host, port), fake, log)
        self._thread: threading.Thread | None = None
        self._serving = False
        self._stopped = False
        fake._register_server(self)
        if fake.closed:
            self._httpd.stopping.set()

    @property
    def host(self) -> str:
        """The address the server is bound to, e.g. ``127.0.0.1`` (never a name)."""
        host = self._httpd.server_address[0]
        return host.decode() if isinstance(host, bytes) else str(host)

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``: pass it as ``api_base``."""
        host = self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        return int(self._httpd.server_address[1])

    def start(self) -> EmulatorServer:
        """Serve in a daemon thread; returns ``self``."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.01},
                name=f"wxauth-emulator-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the current thread until :meth:`stop` is called from another one."""
        self._serving = True
        try:
            self._httpd.serve_forever(poll_interval=0.2)
        finally:
            self._serving = False
            self._close()
            self._httpd.drop_idle_connections()

    def stop(self) -> None:
        """Release hanging requests, stop serving and close the socket (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        self._httpd.stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._close()
            self._httpd.drop_idle_connections()
        elif self._serving:
            # serve_forever() runs in another thread and closes the socket on its way out.
            self._httpd.shutdown()
        else:
            self._close()

    def _close(self) -> None:
        self._httpd.stopping.set()
        self._httpd.server_close()
        self.fake._unregister_server(self)

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
