"""The token service's HTTP face: a Starlette app over a :class:`TokenService`.

Every answer is JSON. A token answer is ``{"access_token": str, "expires_in": int,
"expires_at": int}`` (seconds left, and the epoch second it expires; a ticket answer
has ``"ticket"`` instead), an invalidation answer adds ``"invalidated": bool``, and an
error is ``{"error": "<stable code>", "message": "<text>"}``, with ``Retry-After`` on
429 and 503. The codes: ``unauthorized`` (401), ``forbidden`` (403), ``unknown_app``
and ``not_found`` (404), ``bad_request`` (400), ``body_too_large`` (413),
``method_not_allowed`` (405), ``too_many_invalidations`` (429), ``not_ready``,
``store_unavailable`` and ``wechat_unavailable`` (503), ``internal_error`` (500).

Checks run in this order: the key (401), the app id's shape (400), the client's scope
(403; a client that may read every app gets 404 for an unknown one, any other client
403, so app ids do not leak), then the body. Reads never wait on WeChat while a
token is fresh: the background refreshers keep it so, and a fresh token is answered on
the event loop without I/O; anything else runs in a worker thread, bounded by
``request_timeout``.

This module assembles the app (:func:`create_app`). Its parts: the handlers in
``_handlers``, the answers and refusals in ``_responses``, the invalidation body in
``_body``, the token reads (one worker-thread flight per resource) in ``_reads``, and
the access log and the masking of uvicorn's log lines in ``_logs``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ._body import MAX_BODY
from ._clients import InvalidationLimiter
from ._config import ConfigError, ServerConfig, load_config
from ._fastpath import TOKEN_ROUTE, TokenFastPath
from ._handlers import Handlers
from ._logs import AccessLog, log_somewhere, redact_server_logs
from ._reads import THREADS_PER_RESOURCE
from ._responses import as_endpoint, http_error, internal_error
from ._service import TokenService

__all__ = ["CONFIG_ENV", "MAX_BODY", "THREADS_PER_RESOURCE", "app_from_env", "create_app"]

logger = logging.getLogger("wxauth.server")

#: The environment variable :func:`app_from_env` reads the config file's path from.
CONFIG_ENV = "WXAUTH_SERVER_CONFIG"


class _ServiceApp(Starlette):
    """The service's Starlette app, with :class:`TokenFastPath` in front: a fresh
    token read is answered before Starlette's routing, everything else by it."""

    fast_path: TokenFastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self.fast_path
        if fast is not None and scope["type"] == "http" and await fast(scope, receive, send):
            return
        await super().__call__(scope, receive, send)


def create_app(
    config: ServerConfig,
    *,
    clock: Callable[[], float] | None = None,
    limiter_clock: Callable[[], float] | None = None,
) -> Starlette:
    """The token service as an ASGI app (Starlette) for ``config``.

    Builds one :class:`~wxauth.TokenManager` per app on the configured store; the
    app's lifespan starts their background refreshers and closes them on shutdown.
    ``clock`` (epoch seconds) and ``limiter_clock`` (monotonic seconds, for the
    invalidation limit) are for tests. Raises :class:`~wxauth.StoreError` for a store
    that cannot be opened.
    """
    service = TokenService(config, clock=clock)
    limiter = InvalidationLimiter(
        config.invalidations_per_minute,
        config.invalidation_burst,
        config.invalidations_per_day,
        **({"clock": limiter_clock} if limiter_clock is not None else {}),
    )
    api = Handlers(config, service, limiter)
    routes = [  # the most frequent first: Starlette tries them in order
        Route(TOKEN_ROUTE, as_endpoint(api.get_token), methods=["GET"]),
        Route("/healthz", as_endpoint(api.healthz), methods=["GET"]),
        Route("/readyz", as_endpoint(api.readyz), methods=["GET"]),
        Route("/metrics", as_endpoint(api.metrics), methods=["GET"]),
        Route(
            "/v1/apps/{app_id}/token/invalidate",
            as_endpoint(api.invalidate_token),
            methods=["POST"],
        ),
        Route("/v1/apps/{app_id}/ticket/{kind}", as_endpoint(api.get_ticket), methods=["GET"]),
        Route(
            "/v1/apps/{app_id}/ticket/{kind}/invalidate",
            as_endpoint(api.invalidate_ticket),
            methods=["POST"],
        ),
    ]
    templates = {route.endpoint: route.path for route in routes}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        service.start()
        logger.info(
            "wxauth token service: %d apps, %d clients, store %s",
            len(config.apps), len(config.clients), config.store.split(":", 1)[0],
        )  # fmt: skip
        try:
            async with anyio.create_task_group() as tasks:
                api.reads.tasks = tasks
                try:
                    yield
                finally:
                    api.reads.tasks = None
                    tasks.cancel_scope.cancel()
        finally:
            await anyio.to_thread.run_sync(service.close)

    redact_server_logs()
    app = _ServiceApp(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(AccessLog, metrics=api.prometheus, routes=templates)],
        exception_handlers={HTTPException: http_error, Exception: internal_error},
    )
    # /v1/apps/X/token/ is a 404, not a redirect a client would follow with its key.
    app.router.redirect_slashes = False
    app.state.service = service
    app.fast_path = TokenFastPath(service, api.clients, api.prometheus)
    return app


def app_from_env() -> Starlette:
    """:func:`create_app` for the config file that ``$WXAUTH_SERVER_CONFIG`` names: the
    factory of ``uvicorn --factory wxauth.server:app_from_env`` (and gunicorn's uvicorn
    workers). Unless logging is configured, wxauth's log lines (the access log among
    them) go to stderr at INFO. Raises :class:`ConfigError` when it is unset or wrong."""
    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise ConfigError(f"set {CONFIG_ENV} to the path of the service's TOML config")
    app = create_app(load_config(path))
    log_somewhere()
    return app
