"""Transports on httpx: :class:`HttpxTransport` (``httpx.Client``) and
:class:`AsyncHttpxTransport` (``httpx.AsyncClient``, on asyncio or trio).

They have the duties of :class:`~wxauth.transport.RequestsTransport`, word their failures
with the same helpers and answer a redirect the same way (see :mod:`wxauth.transport`):

- the **total deadline** of the async transport is an anyio cancel scope around the whole
  exchange, so a body trickled for ever is cut at ``timeout``. The sync one gives httpx
  ``timeout`` (what is left of it) for each phase and, once the headers came, shuts the
  connection's socket at the deadline from a timer thread, which wakes a read that
  would otherwise wait a whole read timeout past it;
- **no redirects**: ``follow_redirects=False``, and a 3xx comes back with its body unread;
- a **size cap** of ``request.max_bytes + 1`` decoded bytes.

Only the users of the ``wxauth[httpx]`` extra import this module.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import anyio
import httpx
from requests.structures import CaseInsensitiveDict

from ._protocol import TokenRequest
from ._secret import reveal
from .transport import (
    HTTPAnswer,
    TransportError,
    _failed_read,
    _late,
    _LateError,
    _redirect_answer,
    _timed_out,
    _unbuildable,
    _unreachable,
    _unsendable,
)

__all__ = ["AsyncHttpxTransport", "HttpxTransport"]

_Outcome = tuple[HTTPAnswer | None, TransportError | None]


class _Built:
    """A built ``httpx.Request`` behind a masked repr: an httpx request's repr is its URL,
    whose query may hold the secret, and the frames that send it may end on a traceback
    (of a cancellation, say)."""

    __slots__ = ("request",)

    def __init__(self, request: httpx.Request) -> None:
        self.request = request

    def __repr__(self) -> str:
        return "<token request>"


def _build(
    client: httpx.Client | httpx.AsyncClient, request: TokenRequest, deadline: float
) -> tuple[_Built | None, TransportError | None]:
    """Build the request with the client's defaults and what is left of the deadline
    as httpx's timeouts: ``(built, None)``, or ``(None, failure)``.

    The only frame where the credentials are in clear; it returns before anything is
    sent, so it is on no traceback of a failure to send or of anything raised later."""
    try:
        built = client.build_request(
            request.method,
            request.url,
            params=reveal(request.params),
            json=reveal(request.json),
            headers=reveal(request.headers),
            timeout=max(deadline - time.monotonic(), 0.0),
        )
    except Exception as exc:  # an invalid api_base, a body that is not JSON...
        return None, _unbuildable(exc, request)
    return _Built(built), None


def _auth_for(request: TokenRequest) -> httpx._client.UseClientDefault | None:
    """No auth for a request that brings its own headers (an Authorization): the
    client's auth must not replace them; the client's auth otherwise."""
    return None if request.headers else httpx.USE_CLIENT_DEFAULT


def _send_failure(exc: Exception, request: TokenRequest, timeout: float) -> TransportError:
    """What an exception raised before the answer's headers came means."""
    if isinstance(exc, httpx.TimeoutException):
        return _timed_out(exc, request, timeout)
    if isinstance(exc, httpx.TransportError):  # refused, reset, DNS, proxy, protocol...
        return _unreachable(exc, request)
    return _unsendable(exc, request)


def _redirect(response: httpx.Response) -> HTTPAnswer | None:
    if 300 <= response.status_code < 400:
        return _redirect_answer(response.status_code, response.headers)
    return None


def _answer(response: httpx.Response, body: bytearray, cap: int) -> HTTPAnswer:
    headers = CaseInsensitiveDict(response.headers)
    return HTTPAnswer(response.status_code, headers, bytes(body[: cap + 1]))


def _full(body: bytearray, chunk: bytes, cap: int) -> bool:
    """Add ``chunk`` to ``body``; whether ``cap`` is passed (read no more)."""
    body += chunk
    return len(body) > cap


@contextlib.contextmanager
def _watchdog(response: httpx.Response, deadline: float) -> Iterator[threading.Event]:
    """Shut the socket of an HTTP/1 response at ``deadline`` (``time.monotonic()``);
    yield the event set when it did.

    httpx takes each read's timeout once for the whole body, so a server that sends a
    byte just before the deadline and then nothing would hold a read a whole timeout
    past it; shutting the socket from a timer thread wakes that read at once. The
    connection is dropped afterwards (an unfinished response closes it). Without a
    socket (a mock transport) or over HTTP/2 (whose connection other requests share),
    nothing is shut, and the body loop's own look at the clock is the bound."""
    fired, finished, lock = threading.Event(), threading.Event(), threading.Lock()
    stream = response.extensions.get("network_stream")
    sock = getattr(stream, "get_extra_info", lambda _: None)("socket")
    if not isinstance(sock, socket.socket) or not response.http_version.startswith("HTTP/1"):
        yield fired
        return

    def shut() -> None:
        with lock:
            if finished.is_set():
                return
            fired.set()
            # socket.socket's own shutdown: ssl.SSLSocket's would drop its SSL object
            # under the reading thread.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    timer = threading.Timer(max(deadline - time.monotonic(), 0.0), shut)
    timer.daemon = True
    timer.start()
    try:
        yield fired
    finally:
        with lock:
            finished.set()
        timer.cancel()


def _read_body(response: httpx.Response, deadline: float, cap: int) -> bytearray:
    """Read the decoded body, at most just past the cap; raise :class:`_LateError` when
    a chunk comes after the deadline."""
    body = bytearray()
    for chunk in response.iter_bytes():
        if _full(body, chunk, cap):
            break
        if time.monotonic() >= deadline:
            raise _LateError
    return body


class HttpxTransport:
    """A :class:`~wxauth.transport.Transport` on an :class:`httpx.Client` (its base URL,
    headers, proxies, certificates and mounts apply; its ``auth`` too, so do not give a
    manager a client that carries that manager's own auth)."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def send(self, request: TokenRequest, *, timeout: float) -> HTTPAnswer:
        """Send ``request`` with the client, never following a redirect, and read the
        body by the deadline; raise :class:`~wxauth.transport.TransportError`."""
        answer, failure = self._exchange(request, timeout)
        if failure is not None:
            raise failure  # outside every except block: nothing is chained to it
        assert answer is not None
        return answer

    def _exchange(self, request: TokenRequest, timeout: float) -> _Outcome:
        deadline = time.monotonic() + timeout
        built, failure = _build(self.client, request, deadline)
        if built is None:
            return None, failure
        try:
            response = self.client.send(
                built.request, stream=True, follow_redirects=False, auth=_auth_for(request)
            )
        except Exception as exc:  # the frames of httpx hold the URL: nothing is chained
            return None, _send_failure(exc, request, timeout)
        try:
            redirect = _redirect(response)
            if redirect is not None:
                return redirect, None
            with _watchdog(response, deadline) as shut:
                try:
                    body = _read_body(response, deadline, request.max_bytes)
                except Exception as exc:  # _LateError, ReadError after the shutdown...
                    return None, _failed_read(exc, request, timeout, deadline)
            if shut.is_set():  # a body read to the connection's end may look whole
                return None, _late(timeout)
            return _answer(response, body, request.max_bytes), None
        finally:
            with contextlib.suppress(Exception):
                response.close()

    def __repr__(self) -> str:
        return f"HttpxTransport({type(self.client).__name__})"


class AsyncHttpxTransport:
    """An :class:`~wxauth.transport.AsyncTransport` on an :class:`httpx.AsyncClient`,
    for asyncio and trio (its defaults and ``auth`` apply, as for
    :class:`HttpxTransport`). Cancelling the caller cancels the request: the
    cancellation propagates, it is no :class:`~wxauth.transport.TransportError`."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def send(self, request: TokenRequest, *, timeout: float) -> HTTPAnswer:
        """Send ``request`` with the client, never following a redirect, and read the
        body by the deadline; raise :class:`~wxauth.transport.TransportError`.

        A cancellation (a caller's deadline) propagates, without the frames of httpx
        it passed through: their locals hold the ``httpx.Request``, whose repr is the
        URL with the secret in its query."""
        try:
            answer, failure = await self._exchange(request, timeout)
        except anyio.get_cancelled_exc_class() as cancelled:
            raise cancelled.with_traceback(None)  # noqa: B904 - the same exception
        if failure is not None:
            raise failure  # outside every except block: nothing is chained to it
        assert answer is not None
        return answer

    async def _exchange(self, request: TokenRequest, timeout: float) -> _Outcome:
        with anyio.move_on_after(timeout):
            return await self._attempt(request, timeout, time.monotonic() + timeout)
        return None, _late(timeout)  # the scope cut the exchange at the deadline

    async def _attempt(self, request: TokenRequest, timeout: float, deadline: float) -> _Outcome:
        built, failure = _build(self.client, request, deadline)
        if built is None:
            return None, failure
        try:
            response = await self.client.send(
                built.request, stream=True, follow_redirects=False, auth=_auth_for(request)
            )
        except Exception as exc:  # not the cancellation, a BaseException
            return None, _send_failure(exc, request, timeout)
        try:
            redirect = _redirect(response)
            if redirect is not None:
                return redirect, None
            body = bytearray()
            try:
                async for chunk in response.aiter_bytes():
                    if _full(body, chunk, request.max_bytes):
                        break
            except Exception as exc:  # httpx's read timeout may fire just before ours
                return None, _failed_read(exc, request, timeout, deadline)
            return _answer(response, body, request.max_bytes), None
        finally:
            with contextlib.suppress(Exception):
                await response.aclose()

    def __repr__(self) -> str:
        return f"AsyncHttpxTransport({type(self.client).__name__})"
