"""The token service's hot path: ``GET /v1/apps/{app_id}/token`` of a token the service
holds fresh in memory, answered in plain ASGI before Starlette sees the request.

It is the service's most frequent request by far, and Starlette's routing, request and
response objects cost more than everything the service itself does for it. The fast
path answers only when the whole answer is known without I/O: a known key
(:class:`ClientDirectory`, the same constant-time check), a well-formed app id in the
client's scope, a configured app, and a token :meth:`Resource.cached` has fresh.
Otherwise it has done nothing observable, and the request goes to Starlette, which
checks it all again and answers (every error, every wait for a flight, every other
route). What it answers is what Starlette would: the body and headers come from the
same :func:`token_answer`, cached per token and ``expires_in`` (the JSON is rebuilt
once a second, not per request), and the request is counted and logged by the same
:func:`log_request`.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from .._token import Token
from ._clients import ClientDirectory
from ._metrics import ServiceMetrics
from ._service import ACCESS_TOKEN, Resource, TokenService

__all__ = ["TOKEN_ROUTE", "TokenFastPath", "access_logger", "log_request", "token_answer"]

access_logger = logging.getLogger("wxauth.server.access")

#: The route template of a token read (metrics label it so).
TOKEN_ROUTE = "/v1/apps/{app_id}/token"  # noqa: S105 - a route
# A token read's path with a well-formed app id (APP_ID_PATTERN); anything else
# (a bad app id, a trailing slash) is Starlette's to answer.
_TOKEN_PATH = re.compile(r"/v1/apps/([A-Za-z0-9_-]{1,64})/token")
_ACCESS_LINE = "client=%s method=%s path=%s status=%d duration_ms=%.1f"


def token_answer(resource: Resource, token: Token, now: float, **extra: Any) -> JSONResponse:
    """The answer naming ``token`` at ``now``: ``{field: value, "expires_in": seconds
    left, "expires_at": epoch second, **extra}`` (``field``: ``access_token`` or
    ``ticket``), never cached by a proxy."""
    field = "access_token" if resource.kind == ACCESS_TOKEN else "ticket"
    body = {
        field: token.value,
        "expires_in": max(0, int(token.expires_at - now)),
        "expires_at": int(token.expires_at),
        **extra,
    }
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


def log_request(
    metrics: ServiceMetrics,
    route: str,
    method: str,
    status: int,
    client: str,
    path: str,
    started: float,
) -> None:
    """Count one answered request and write its access line (``started``: its
    :func:`time.perf_counter` when it arrived)."""
    metrics.count(route, method, status, client)
    access_logger.info(
        _ACCESS_LINE, client, method, path, status, (time.perf_counter() - started) * 1000
    )


class _Answer:
    """A token answer ready to send: whose token, at which ``expires_in``."""

    __slots__ = ("body", "expires_in", "headers", "token")

    def __init__(self, token: Token, expires_in: int, response: JSONResponse) -> None:
        self.token = token
        self.expires_in = expires_in
        self.body = response.body
        self.headers = tuple(response.raw_headers)


class TokenFastPath:
    """Answers a fresh token read in plain ASGI (see the module's docstring)."""

    def __init__(
        self, service: TokenService, clients: ClientDirectory, metrics: ServiceMetrics
    ) -> None:
        self.service = service
        self.clients = clients
        self.metrics = metrics
        # Per resource label: the last answer built (the event loop's only: no lock).
        self._answers: dict[str, _Answer] = {}

    def _prepare(self, scope: Scope) -> tuple[str, str, _Answer] | None:
        """The client's name, the path and the answer of a read the fast path serves,
        or ``None`` (then nothing was done: Starlette answers)."""
        if scope.get("root_path") or scope["method"] != "GET":
            return None
        path = scope["path"]
        match = _TOKEN_PATH.fullmatch(path)
        if match is None:
            return None
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":  # the first one, as Starlette's Headers.get
                authorization = value.decode("latin-1")
                break
        client = self.clients.authenticate(authorization)
        if client is None:
            return None
        app_id = match.group(1)
        if not client.may_read(app_id):
            return None
        resource = self.service.resource(app_id)
        if resource is None:
            return None
        token = resource.cached()
        if token is None:
            return None
        now = resource.manager.clock()
        expires_in = max(0, int(token.expires_at - now))
        answer = self._answers.get(resource.label)
        if answer is None or answer.token is not token or answer.expires_in != expires_in:
            answer = _Answer(token, expires_in, token_answer(resource, token, now))
            self._answers[resource.label] = answer
        return client.name, path, answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer ``scope`` if it is a fresh token read; say whether it did."""
        started = time.perf_counter()
        try:
            prepared = self._prepare(scope)
        except Exception:  # whatever went wrong, Starlette answers (and logs) it
            return False
        if prepared is None:
            return False
        client, path, answer = prepared
        try:
            await send(
                {"type": "http.response.start", "status": 200, "headers": list(answer.headers)}
            )
            await send({"type": "http.response.body", "body": answer.body})
        finally:
            # As the slow path's: a request is counted and logged by the status it
            # was answered with, even when the client left while it was sent.
            log_request(self.metrics, TOKEN_ROUTE, "GET", 200, client, path, started)
        return True
