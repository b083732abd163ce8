"""How a token source's fetch is carried out: the :class:`FetchContext` a manager hands
in, the bounded retry around one token request (:func:`fetch_token_answer`), and the
sync driver of a source's flow of steps (:func:`drive`). Re-exported by
:mod:`wxauth.sources`, their public home."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests

from ._errors import RETRYABLE_ERRCODES, TokenFetchError
from ._protocol import Failure, TokenRequest, read_token_answer
from ._secret import Secret
from .stores._base import TokenStore
from .transport import RequestsTransport, Transport, TransportError

__all__ = [
    "DEFAULT_BACKOFF",
    "DEFAULT_RETRIES",
    "FetchContext",
    "FlowStep",
    "ReadMeta",
    "TokenFlow",
    "WriteMeta",
    "call_token_endpoint",
    "drive",
    "fetch_token_answer",
]

logger = logging.getLogger("wxauth")

#: How many times a token fetch is retried after ``-1 system busy``, an HTTP 5xx or a
#: connection error (timeouts are not retried: the caller already waited ``timeout``).
DEFAULT_RETRIES = 2
#: First backoff between those retries, in seconds; it doubles each time.
DEFAULT_BACKOFF = 0.5


@dataclass
class FetchContext:
    """What a source may use while it fetches (handed in by the manager)."""

    #: The HTTP session to send the token request with.
    session: requests.Session
    #: Seconds one HTTP request may take in all: connect, headers and body.
    timeout: float
    #: Epoch-seconds clock of the manager.
    clock: Callable[[], float]
    #: The manager's store, for bookkeeping a source shares across processes.
    store: TokenStore
    #: The token a caller last reported as rejected (40001/40014/42001), if any.
    rejected: str | None = field(default=None, repr=False)
    #: Retries after a transient failure, and the first backoff in seconds.
    retries: int = DEFAULT_RETRIES
    backoff: float = DEFAULT_BACKOFF
    #: Sleep function (tests pass a no-op or a fake).
    sleep: Callable[[float], None] = field(default=time.sleep)
    #: What sends the token requests; default a :class:`~wxauth.transport.RequestsTransport`
    #: on ``session``.
    transport: Transport | None = None


def fetch_token_answer(ctx: FetchContext, request: TokenRequest) -> dict[str, Any]:
    """Send ``request`` through the context's transport with a bounded retry, and
    return the decoded answer.

    Retries ``-1``/``-1000`` (system busy), HTTP 5xx and connection errors up to
    ``ctx.retries`` times with doubling backoff. Raises :class:`TokenFetchError` for
    transport failures and unexpected bodies, and the class
    :func:`~wxauth._errors.error_for_token_endpoint` picks for a non-zero errcode.
    Messages are scrubbed of the request's secrets; nothing is chained.
    """
    transport = ctx.transport if ctx.transport is not None else RequestsTransport(ctx.session)
    attempt = 0
    while True:
        outcome = _attempt(transport, request, ctx.timeout)
        if not isinstance(outcome, Failure):
            return outcome
        if not outcome.retryable or attempt >= ctx.retries:
            raise outcome.error
        delay = ctx.backoff * (2**attempt)
        logger.warning("%s; retrying in %.2fs", outcome.error, delay)
        ctx.sleep(delay)
        attempt += 1


def _attempt(
    transport: Transport, request: TokenRequest, timeout: float
) -> dict[str, Any] | Failure:
    """One request: the decoded answer, or a :class:`Failure` (returned, not raised, so
    that nothing the transport raised becomes the ``__context__`` of the error)."""
    try:
        answer = transport.send(request, timeout=timeout)
    except TransportError as exc:
        return Failure(TokenFetchError(f"{request.path} {exc.message}"), exc.retryable)
    return read_token_answer(request, answer.status, answer.headers, answer.body)


@dataclass(frozen=True)
class ReadMeta:
    """A step of a :meth:`TokenSource.flow`: read the store's meta record ``key``; the
    flow is sent its text (or ``None``)."""

    key: str


@dataclass(frozen=True)
class WriteMeta:
    """A step of a :meth:`TokenSource.flow`: write ``value`` under the meta key ``key``
    for ``ttl`` seconds; the flow is sent ``None``."""

    key: str
    value: str
    ttl: float


#: What a flow yields: a token request (it is sent the decoded answer, after the
#: bounded retry), or a meta record to read or write.
FlowStep = TokenRequest | ReadMeta | WriteMeta
#: A source's fetch as a generator of steps, returning ``(access_token, expires_in)``.
TokenFlow = Generator[FlowStep, Any, tuple[str, float]]


def drive(flow: TokenFlow, ctx: FetchContext) -> tuple[str, float]:
    """Run a :meth:`TokenSource.flow` with ``ctx``'s transport and store: the sync
    driver (``wxauth.AsyncTokenManager`` has the async one)."""
    reply: Any = None
    while True:
        try:
            step = flow.send(reply)
        except StopIteration as done:
            result: tuple[str, float] = done.value
            return result
        if isinstance(step, TokenRequest):
            reply = fetch_token_answer(ctx, step)
        elif isinstance(step, ReadMeta):
            reply = ctx.store.get_meta(step.key)
        else:
            ctx.store.set_meta(step.key, step.value, ttl=step.ttl)
            reply = None


def call_token_endpoint(
    ctx: FetchContext,
    method: str,
    url: str,
    *,
    path: str,
    secrets: tuple[str | Secret, ...],
    params: Mapping[str, str | Secret] | None = None,
    json_body: Mapping[str, Any] | None = None,
    retryable_errcodes: frozenset[int] = RETRYABLE_ERRCODES,
) -> dict[str, Any]:
    """:func:`fetch_token_answer` for a request given by its parts (pass credentials
    as :class:`~wxauth.Secret` values, so no frame holds them in clear)."""
    request = TokenRequest(
        method,
        url,
        path,
        params=dict(params or {}),
        json=json_body,
        secrets=tuple(Secret(secret) for secret in secrets),
        retryable_errcodes=retryable_errcodes,
    )
    return fetch_token_answer(ctx, request)
