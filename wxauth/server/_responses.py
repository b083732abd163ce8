"""The token service's answers, for the handlers and the app: the JSON error
(``{"error": code, "message": text}``, with ``Retry-After`` on 429 and 503 and a
``WWW-Authenticate`` on 401), the 503 for a token that could not be got, a token answer,
and :class:`RefusalError`, which a handler raises to answer at once (an endpoint made
with :func:`as_endpoint` answers its response); plus the exception handlers Starlette
calls for a 404, a 405 or a crash.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .._errors import RefreshBudgetError, StoreError, WeChatAPIError
from .._token import Token
from ._fastpath import token_answer
from ._service import Resource

__all__ = [
    "RETRY_STORE",
    "RETRY_WECHAT",
    "RefusalError",
    "answer",
    "as_endpoint",
    "error",
    "hang_up",
    "http_error",
    "internal_error",
    "unavailable",
]

logger = logging.getLogger("wxauth.server")

#: Retry-After (seconds) of a 503 when nothing better is known.
RETRY_STORE = 5
RETRY_WECHAT = 10


def error(
    status: int, code: str, message: str, *, retry_after: float | None = None, **extra: Any
) -> JSONResponse:
    """An error answer: ``{"error": code, "message": message}`` (plus ``extra``)."""
    headers = {}
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="wxauth"'
    return JSONResponse({"error": code, "message": message, **extra}, status, headers=headers)


def hang_up(response: Response) -> Response:
    """``response``, and then the connection closed: the rest of a body refused
    unread (too large, or trickling in) is not waited for."""
    response.headers["Connection"] = "close"
    return response


class RefusalError(Exception):
    """Raised inside a handler to answer ``response`` at once."""

    def __init__(self, response: Response) -> None:
        self.response = response


def answer(resource: Resource, token: Token, **extra: Any) -> JSONResponse:
    """The answer for ``token`` of ``resource`` (``extra``: more fields)."""
    return token_answer(resource, token, resource.manager.clock(), **extra)


def unavailable(exc: BaseException, what: str, *, log: bool = True) -> JSONResponse:
    """The 503 for a failure to get ``what`` (the message never holds a secret);
    ``log``: also log the failure (once per failure, not once per waiting request)."""
    if isinstance(exc, StoreError):
        if log:
            logger.warning("%s: the store is unavailable: %s", what, exc)
        return error(
            503, "store_unavailable", "the token store is unavailable; retry shortly",
            retry_after=RETRY_STORE,
        )  # fmt: skip
    if isinstance(exc, TimeoutError):
        if log:
            logger.warning("%s: no token within the request timeout", what)
        message = "no token within the request timeout; WeChat may be slow"
        return error(503, "wechat_unavailable", message, retry_after=RETRY_WECHAT)
    if log:
        logger.warning("%s: %s: %s", what, type(exc).__name__, exc)
    retry: float = RETRY_WECHAT
    if isinstance(exc, RefreshBudgetError):
        retry = exc.retry_after
        message = "this app's local fetch budget is spent; retry later"
    elif isinstance(exc, WeChatAPIError):
        message = f"WeChat refused the token request (errcode {exc.errcode}); see the server log"
    else:
        message = "WeChat could not be reached; see the server log"
    return error(503, "wechat_unavailable", message, retry_after=retry)


def as_endpoint(
    handler: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """``handler`` as an endpoint: a :class:`RefusalError` it raises is answered with
    its response."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except RefusalError as failure:
            return failure.response

    endpoint.__doc__ = handler.__doc__
    return endpoint


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, a wrong method) as JSON errors."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error(404, "not_found", "no such endpoint")
    if exc.status_code == 405:
        response = error(405, "method_not_allowed", "method not allowed here")
        if exc.headers and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    return error(exc.status_code, "bad_request", "bad request")


async def internal_error(request: Request, exc: Exception) -> Response:
    """A crash as a 500 that says nothing of its cause (the server log has it)."""
    return error(500, "internal_error", "internal error; see the server log")
