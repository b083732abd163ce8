"""The transport seam: how a token request reaches a token endpoint.

A token source builds a :class:`~wxauth._protocol.TokenRequest` (pure data) and reads
the answer with pure functions; a :class:`Transport` is the only part that does I/O.
It sends one request and returns the status, the headers and the body, with three
duties that make a token request safe whatever HTTP library carries it:

- a **total deadline**: connect, headers and body within ``timeout`` seconds, however
  slowly a server trickles its answer (a per-read timeout never trips on that);
- **no redirects**: a 3xx is returned as it is (its body unread), never followed, since
  following it would carry the secret to wherever it points;
- a **size cap**: at most ``request.max_bytes + 1`` bytes of body are read (default
  ``MAX_ANSWER_BYTES``).

Failures to send or to read are raised as :class:`TransportError` with a message free of
secrets, and with no exception of the HTTP library chained to it (their messages and
frames hold the URL, and the secret with it). :class:`RequestsTransport` is the one for
:mod:`requests`; ``wxauth.httpx`` has the httpx ones. Adding another HTTP library means
writing another transport, with the wording of its failures and its answer to a redirect
taken from the helpers below, so that every transport reports alike.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests
from requests.structures import CaseInsensitiveDict

from ._protocol import TokenRequest, scrub, shown_location
from ._secret import Secret, reveal

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


# -- what every transport says: one wording and one redirect answer, whatever the library --


def _detail(exc: BaseException, secrets: tuple[Secret, ...], *, named: bool = False) -> str:
    """What ``exc`` says, scrubbed of ``secrets`` (with its class name if ``named``, or
    if it says nothing)."""
    text = str(exc)
    if named or not text:
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return scrub(text, secrets)


def _unbuildable(exc: Exception, request: TokenRequest) -> TransportError:
    """The HTTP library refused to build the request (an invalid api_base, a body that
    is not JSON...)."""
    problem = _detail(exc, request.secrets, named=True)
    return TransportError(f"could not be built into a request: {problem}", retryable=False)


def _timed_out(exc: Exception, request: TokenRequest, timeout: float) -> TransportError:
    """The library's own timeout fired before the answer's headers came."""
    return TransportError(
        f"timed out after {timeout}s: {_detail(exc, request.secrets)}", retryable=False
    )


def _unreachable(exc: Exception, request: TokenRequest) -> TransportError:
    """The connection failed (refused, reset, DNS...): a bounded retry may help."""
    return TransportError(f"could not be reached: {_detail(exc, request.secrets)}", retryable=True)


def _unsendable(exc: Exception, request: TokenRequest) -> TransportError:
    """Anything else the HTTP stack raised while sending."""
    message = _detail(exc, request.secrets, named=True)
    return TransportError(f"could not be sent: {message}", retryable=False)


def _late(timeout: float) -> TransportError:
    """The total deadline passed."""
    return TransportError(f"did not finish within {timeout}s", retryable=False)


def _failed_read(
    exc: Exception, request: TokenRequest, timeout: float, deadline: float
) -> TransportError:
    """Reading the body failed: at the deadline (``time.monotonic()``; a read timeout
    may fire a little early) it did not finish in time, before it the answer broke off."""
    if time.monotonic() >= deadline - _SLACK:
        return _late(timeout)
    message = _detail(exc, request.secrets, named=True)
    return TransportError(f"answer broke off: {message}", retryable=True)


def _redirect_answer(status: int, headers: Mapping[str, str]) -> HTTPAnswer:
    """A 3xx as every transport returns it: no body (it is never read) and the
    ``Location`` only as far as it is safe to show (:func:`shown_location`)."""
    shown = CaseInsensitiveDict(headers)
    shown["Location"] = shown_location(shown.get("Location", ""))
    return HTTPAnswer(status, shown)


# -- requests ----------------------------------------------------------------------------


class _LateError(Exception):
    """The deadline passed while the body was read (internal)."""


class _RedirectError(Exception):
    """Raised by the redirect hook out of ``Session.send`` (internal)."""

    def __init__(self, answer: HTTPAnswer) -> None:
        super().__init__(answer.status)
        self.answer = answer


def _refuse_redirect(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    """Response hook: stop at a 3xx's headers. Even with ``allow_redirects=False``,
    ``Session.send`` reads a redirect's whole body before it returns, and no deadline
    would bound that read."""
    if 300 <= response.status_code < 400:
        answer = _redirect_answer(response.status_code, response.headers)
        response.close()
        raise _RedirectError(answer)


def _as_given(prepared: requests.PreparedRequest) -> requests.PreparedRequest:
    """A requests auth that leaves the request as it is."""
    return prepared


class RequestsTransport:
    """A :class:`Transport` on a :class:`requests.Session` (its proxies, certificates,
    headers and adapters apply; its ``auth`` too, so do not give a manager a session
    that carries that manager's own ``WxAuth``)."""

    def __init__(self, session: requests.Session) -> None:
        self.session = session

    def _prepare(
        self, request: TokenRequest
    ) -> tuple[requests.PreparedRequest | None, TransportError | None]:
        """Build the request with the session's defaults: ``(prepared, None)``, or
        ``(None, failure)``.

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
                    headers=reveal(request.headers),
                    # A request that brings its own headers (an Authorization) keeps
                    # them: neither the session's auth nor ~/.netrc replaces them.
                    auth=_as_given if request.headers else None,
                )
            )
        except Exception as exc:  # an invalid api_base, a body that is not JSON...
            return None, _unbuildable(exc, request)
        prepared.hooks["response"].append(_refuse_redirect)  # after the session's hooks
        return prepared, None

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
        prepared, failure = self._prepare(request)
        if prepared is None:
            return None, failure
        session = self.session
        try:
            settings = session.merge_environment_settings(prepared.url, {}, True, None, None)
            # stream=True (from the environment settings): the body is read below.
            response = session.send(prepared, timeout=timeout, allow_redirects=False, **settings)
        except _RedirectError as exc:
            return exc.answer, None
        except requests.Timeout as exc:
            return None, _timed_out(exc, request, timeout)
        except requests.RequestException as exc:
            return None, _unreachable(exc, request)
        except Exception as exc:  # anything else from the HTTP stack: its frames hold the URL
            return None, _unsendable(exc, request)
        with response:
            if 300 <= response.status_code < 400:  # a session whose send() skips our hook
                return _redirect_answer(response.status_code, response.headers), None
            try:
                body = _read_body(response, deadline, request.max_bytes)
            except Exception as exc:  # _LateError, ChunkedEncodingError, ReadTimeoutError...
                return None, _failed_read(exc, request, timeout, deadline)
            headers = CaseInsensitiveDict(response.headers)
        return HTTPAnswer(response.status_code, headers, body), None

    def __repr__(self) -> str:
        return f"RequestsTransport({type(self.session).__name__})"


def _read_body(response: requests.Response, deadline: float, cap: int) -> bytes:
    """Read the (streamed) body by ``deadline`` (``time.monotonic()``), decoded like
    ``response.content``, and at most ``cap + 1`` bytes of it; raise
    :class:`_LateError` at the deadline, or what requests raised.

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
    chunks = response.iter_content(chunk_size=1)
    while len(body) <= cap:
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
    return bytes(body)
