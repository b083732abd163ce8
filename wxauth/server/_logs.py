"""What the token service logs, and what it keeps out of logs: the access log (one
line per request, which also counts it), the filter that masks tokens, secrets and
client keys in uvicorn's log lines, and a default handler for wxauth's loggers when
nothing configured logging.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._redact import RedactingFilter, redact_url_text
from ._clients import KEY_PREFIX
from ._fastpath import log_request
from ._metrics import ServiceMetrics

__all__ = [
    "SCOPE_CLIENT",
    "SCOPE_PATH",
    "AccessLog",
    "ServerLogFilter",
    "log_somewhere",
    "redact_server_logs",
]

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
# Where a handler leaves what the access log and the request counter show.
SCOPE_CLIENT = "wxauth.client"
SCOPE_PATH = "wxauth.path"


class AccessLog:
    """Logs one line per request (``client=NAME method=M path=P status=S
    duration_ms=D``; a path is shown only once it was found to be a configured app's,
    so no junk, key or token a client puts in a path reaches the log) and counts it."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, routes: dict[Any, str]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = self.routes.get(scope.get("endpoint"), "other")
            method = scope["method"] if scope["method"] in _METHODS else "other"
            path = scope.get(SCOPE_PATH) or (route if route != "other" else "-")
            log_request(
                self.metrics, route, method, status, scope.get(SCOPE_CLIENT, "-"), path, started
            )


class ServerLogFilter(logging.Filter):
    """Masks, in uvicorn's log lines, what a client may have put in a URL: tokens and
    secrets (``access_token=``, ``secret=``), client keys (``wxk_...`` wherever they
    are, in a path segment too) and the values of query parameters named like a key
    (``key=``, ``api_key=``, ``authorization=``) or following ``Bearer``."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record is the logger's problem, not ours
            return True
        cleaned = _CLIENT_KEY.sub(KEY_PREFIX + "***", redact_url_text(message))
        cleaned = _QUERY_KEY.sub(r"\1***", _BEARER.sub(r"\1***", cleaned))
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True


_CLIENT_KEY = re.compile(re.escape(KEY_PREFIX) + r"[A-Za-z0-9_\-]+")
_BEARER = re.compile(r"(\b[Bb]earer(?:%20|\+|\s)+)[^\s&'\"]+")
_QUERY_KEY = re.compile(r"([?&][\w.-]*(?:key|authorization|auth)=)[^&\s'\"#]+", re.IGNORECASE)


def redact_server_logs() -> None:
    """uvicorn's access log shows a request's path and query: mask any token, secret
    or client key put there."""
    redacting = ServerLogFilter()
    for name in ("uvicorn.access", "uvicorn.error"):
        log = logging.getLogger(name)
        for old in [f for f in log.filters if isinstance(f, RedactingFilter)]:
            log.removeFilter(old)  # what earlier versions installed: ours does it too
        if not any(isinstance(f, ServerLogFilter) for f in log.filters):
            log.addFilter(redacting)


def log_somewhere() -> None:
    """uvicorn and gunicorn configure their own loggers only: unless logging is set up,
    send wxauth's (the access log among them) to stderr at INFO."""
    wxauth_logger = logging.getLogger("wxauth")
    if logging.getLogger().handlers or wxauth_logger.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    wxauth_logger.addHandler(handler)
    if wxauth_logger.level == logging.NOTSET:
        wxauth_logger.setLevel(logging.INFO)
