"""The transport seam: how a token request reaches a token endpoint.

A token source builds a :class:`~wxauth._protocol.TokenRequest` (pure data) and reads
the answer with pure functions; a :class:`Transport` is the only part that does I/O.
It sends one request and returns the status, the headers and the body, with three
duties that make a token request safe whatever HTTP library carries it:

- a **total deadline**: connect, headers and body within ``timeout`` seconds, however
  slowly a server trickles its answer (a per-read timeout never trips on that);
- **no redirects**: a 3xx is returned as it is (its body unread), never followed, since
  following it would carry the secret to wherever it points;
- a **size cap**: at most ``MAX_ANSWER_BYTES + 1`` bytes of body are read.

Failures to send or to read are raised as :class:`TransportError` with a message free of
secrets, and with no exception of the HTTP library chained to it (their messages and
frames hold the URL, and the secret with it). :class:`RequestsTransport` is the one for
:mod:`requests`; adding another HTTP library means writing another transport.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests
from requests.structures import CaseInsensitiveDict

from ._protocol import MAX_ANSWER_BYTES, TokenRequest, scrub, shown_location
from ._secret import reveal

__all__ = [
    "AsyncTransport",
    "HTTPAnswer",
    "RequestsTransport",
    "TokenRequest",
    "Transport",
    "TransportError",
]


@dataclass(frozen=True)
class HTTPAnswer:
    """What a transport got back: status, headers (case-insensitive) and body."""

    status: int
    headers: Mapping[str, str] = field(default_factory=CaseInsensitiveDict)
    body: bytes = b""


class TransportError(Exception):
    """A token request could not be sent or its answer not read. ``message`` is free
    of secrets and says what happened after the endpoint's path ("timed out after
    10.0s: ..."); ``retryable`` says whether a bounded retry may help (a refused
    connection may; a timeout, after the caller already waited, does not)."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


class Transport(Protocol):
    """Sends token requests. See the module docstring for the duties."""

    def send(self, request: TokenRequest, *, timeout: float) -> HTTPAnswer:
        """Send ``request``; return the answer, or raise :class:`TransportError`."""
        ...


class AsyncTransport(Protocol):
    """Sends token requests from ``async`` code, with the same duties, without blocking
    the event loop (``wxauth.httpx.AsyncHttpxTransport`` is the httpx one)."""

    async def send(self, request: TokenRequest, *, timeout: float) -> HTTPAnswer:
        """Send ``request``; return the answer, or raise :class:`TransportError`."""
        ...


#: A read timeout may fire this much before the deadline (clock granularity).
_SLACK = 0.05


class _LateError(Exception):
    """The deadline passed while the body was read (internal)."""


class _BrokenError(Exception):
    """The connection broke off while the body was read (internal)."""


class _RedirectError(Exception):
    """Raised by the redirect hook out of ``Session.send`` (internal)."""

    def __init__(self, status: int, headers: Mapping[str, str]) -> None:
        super().__init__(status)
        self.answer = HTTPAnswer(status, CaseInsensitiveDict(headers))


def _refuse_redirect(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    """Response hook: stop at a 3xx's headers. Even with ``allow_redirects=False``,
    ``Session.send`` reads a redirect's whole body before it returns, and no deadline
    would bound that read."""
    if 300 <= response.status_code < 400:
        headers = {"Location": shown_location(response.headers.get("Location", ""))}
        response.close()
        raise _RedirectError(response.status_code, headers)


class RequestsTransport:
    """A :class:`Transport` on a :class:`requests.Session` (its proxies, certificates,
    headers and adapters apply; its ``auth`` too, so do not give a manager a session
    that carries that manager's own ``WxAuth``)."""

    def __init__(self, session: requests.Session) -> None:
        self.session = session

    def _prepare(self, request: TokenRequest) -> tuple[requests.PreparedRequest | None, str]:
        """Build the request with the session's defaults: ``(prepared, "")``, or
        ``(None, why)`` with the reason scrubbed.

        The only frame where the credentials are in clear. It returns before the
        request is sent, so it (and the frames of requests below it) is on no
        traceback of a failure to send or of an error raised later. A
        ``PreparedRequest`` shows only its method in its repr."""
        try:
            prepared = self.session.prepare_request(
                requests.Request(
                    request.method,
                    request.url,
                    params=reveal(request.params),
                    json=reveal(request.json),
                )
            )
        except Exception as exc:  # an invalid api_base, a body that is not JSON...
            return None, scrub(f"{type(exc).__name__}: {exc}", request.secrets)
        prepared.hooks["response"].append(_refuse_redirect)  # after the session's hooks
        return prepared, ""

    def send(self, request: TokenRequest, *, timeout: float) -> HTTPAnswer:
        """Send ``request`` as ``Session.request()`` would (with the environment's
        proxy and certificate settings), never following a redirect, and read the body
        by the deadline."""
        answer, failure = self._exchange(request, timeout)
        if failure is not None:
            raise failure  # outside every except block: nothing is chained to it
        assert answer is not None
        return answer

    def _exchange(
        self, request: TokenRequest, timeout: float
    ) -> tuple[HTTPAnswer | None, TransportError | None]:
        deadline = time.monotonic() + timeout
        prepared, problem = self._prepare(request)
        if prepared is None:
            return None, TransportError(
                f"could not be built into a request: {problem}", retryable=False
            )
        session = self.session
        try:
            settings = session.merge_environment_settings(prepared.url, {}, True, None, None)
            # stream=True (from the environment settings): the body is read below.
            response = session.send(prepared, timeout=timeout, allow_redirects=False, **settings)
        except _RedirectError as exc:
            return exc.answer, None
        except requests.Timeout as exc:
            message = scrub(str(exc), request.secrets)
            return None, TransportError(f"timed out after {timeout}s: {message}", retryable=False)
        except requests.RequestException as exc:
            message = scrub(str(exc), request.secrets)
            return None, TransportError(f"could not be reached: {message}", retryable=True)
        except Exception as exc:  # anything else from the HTTP stack: its frames hold the URL
            message = scrub(f"{type(exc).__name__}: {exc}", request.secrets)
            return None, TransportError(f"could not be sent: {message}", retryable=False)
        with response:
            headers = CaseInsensitiveDict(response.headers)
            if 300 <= response.status_code < 400:  # a session whose send() skips our hook
                headers["Location"] = shown_location(headers.get("Location", ""))
                return HTTPAnswer(response.status_code, headers), None
            try:
                body = _read_body(response, deadline)
            except _LateError:
                return None, TransportError(f"did not finish within {timeout}s", retryable=False)
            except _BrokenError as exc:
                message = scrub(str(exc), request.secrets)
                return None, TransportError(f"answer broke off: {message}", retryable=True)
        return HTTPAnswer(response.status_code, headers, body), None

    def __repr__(self) -> str:
        return f"RequestsTransport({type(self.session).__name__})"


def _read_body(response: requests.Response, deadline: float) -> bytes:
    """Read the (streamed) body by ``deadline`` (``time.monotonic()``), decoded like
    ``response.content``, and at most ``MAX_ANSWER_BYTES + 1`` bytes of it; raise
    :class:`_LateError` or :class:`_BrokenError`.

    The body is read a byte at a time: a buffered read of n bytes waits until n bytes
    came, however late, while a 1-byte read returns as soon as the server sent
    anything, so the deadline is looked at after every byte (0.5 ms for a 200-byte
    answer, 0.17 s for 64 KiB on loopback). Each wait for the server is cut to what is
    left of the deadline by shortening the socket's timeout; urllib3 sets it afresh for
    the next request on that connection.
    """
    sock = getattr(getattr(response.raw, "connection", None), "sock", None)
    settimeout = getattr(sock, "settimeout", None)
    applied = math.inf
    body = bytearray()
    try:
        chunks = response.iter_content(chunk_size=1)
        while len(body) <= MAX_ANSWER_BYTES:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _LateError
            if settimeout is not None and remaining < applied - 0.01:
                settimeout(remaining)
                applied = remaining
            chunk = next(chunks, None)
            if chunk is None:
                break
            body += chunk
    except _LateError:
        raise
    except Exception as exc:  # ChunkedEncodingError, ConnectionError(ReadTimeoutError)...
        if time.monotonic() >= deadline - _SLACK:
            raise _LateError from None
        raise _BrokenError(f"{type(exc).__name__}: {exc}") from None
    return bytes(body)
