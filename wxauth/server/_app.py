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
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._errors import RefreshBudgetError, StoreError, WeChatAPIError, WxAuthError
from .._redact import RedactingFilter, redact_token, redact_url_text
from .._secret import Secret
from .._token import Token
from ._clients import KEY_PREFIX, ClientDirectory, InvalidationLimiter
from ._config import APP_ID_PATTERN, ClientConfig, ConfigError, ServerConfig, load_config
from ._fastpath import TOKEN_ROUTE, TokenFastPath, log_request, token_answer
from ._metrics import ServiceMetrics
from ._service import ACCESS_TOKEN, Resource, TokenService

__all__ = ["CONFIG_ENV", "MAX_BODY", "THREADS_PER_RESOURCE", "app_from_env", "create_app"]

logger = logging.getLogger("wxauth.server")

#: The environment variable :func:`app_from_env` reads the config file's path from.
CONFIG_ENV = "WXAUTH_SERVER_CONFIG"
#: Largest request body accepted (bytes); an invalidation body is well under 1 KiB.
MAX_BODY = 4096
#: A token or ticket as a client may report it: visible ASCII, at most 2048 characters.
_REPORTED = re.compile(r"[\x21-\x7e]{1,2048}")
_KIND = re.compile(r"[a-z_]{1,32}")
#: Worker threads one app's token (or ticket) may hold at once: an app whose fetch hangs
#: cannot take the threads the other apps' requests need.
THREADS_PER_RESOURCE = 8
#: After a failed flight, a resource with a valid remembered token waits this many
#: seconds before the next one (a store that refuses is not asked on every read).
_FLIGHT_RETRY = 1.0
#: Retry-After (seconds) of a 503 when nothing better is known.
_RETRY_STORE = 5
_RETRY_WECHAT = 10
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
# Where a handler leaves what the access log and the request counter show.
_CLIENT = "wxauth.client"
_PATH = "wxauth.path"

_T = TypeVar("_T")


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


def _hang_up(response: Response) -> Response:
    """``response``, and then the connection closed: the rest of a body refused
    unread (too large, or trickling in) is not waited for."""
    response.headers["Connection"] = "close"
    return response


class _RefusalError(Exception):
    """Raised inside a handler to answer ``response`` at once."""

    def __init__(self, response: Response) -> None:
        self.response = response


def _answer(resource: Resource, token: Token, **extra: Any) -> JSONResponse:
    return token_answer(resource, token, resource.manager.clock(), **extra)


def _unavailable(exc: BaseException, what: str, *, log: bool = True) -> JSONResponse:
    """The 503 for a failure to get ``what`` (the message never holds a secret);
    ``log``: also log the failure (once per failure, not once per waiting request)."""
    if isinstance(exc, StoreError):
        if log:
            logger.warning("%s: the store is unavailable: %s", what, exc)
        return error(
            503, "store_unavailable", "the token store is unavailable; retry shortly",
            retry_after=_RETRY_STORE,
        )  # fmt: skip
    if isinstance(exc, TimeoutError):
        if log:
            logger.warning("%s: no token within the request timeout", what)
        message = "no token within the request timeout; WeChat may be slow"
        return error(503, "wechat_unavailable", message, retry_after=_RETRY_WECHAT)
    if log:
        logger.warning("%s: %s: %s", what, type(exc).__name__, exc)
    retry: float = _RETRY_WECHAT
    if isinstance(exc, RefreshBudgetError):
        retry = exc.retry_after
        message = "this app's local fetch budget is spent; retry later"
    elif isinstance(exc, WeChatAPIError):
        message = f"WeChat refused the token request (errcode {exc.errcode}); see the server log"
    else:
        message = "WeChat could not be reached; see the server log"
    return error(503, "wechat_unavailable", message, retry_after=retry)


class _Flight:
    """One worker thread getting a resource's token, and the reads waiting for it."""

    __slots__ = ("done", "error", "timeout_logged", "token")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.token: Token | None = None
        self.error: BaseException | None = None
        self.timeout_logged = False


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate keys")
    return result


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class _Api:
    """The request handlers, over one service."""

    def __init__(
        self, config: ServerConfig, service: TokenService, limiter: InvalidationLimiter
    ) -> None:
        self.config = config
        self.service = service
        self.clients = ClientDirectory(config.clients)
        self.limiter = limiter
        self.prometheus = ServiceMetrics(service)
        self._limiters: dict[str, anyio.CapacityLimiter] = {}
        #: Started by the lifespan: runs the flights (None: no lifespan, a thread a read).
        self.tasks: TaskGroup | None = None
        self._flights: dict[str, _Flight] = {}
        # Monotonic time before which a resource whose last flight failed gets no new
        # one while its remembered token is valid (a down store is asked once a second).
        self._retry_at: dict[str, float] = {}

    # -- helpers ---------------------------------------------------------------------

    def _limiter(self, resource: Resource) -> anyio.CapacityLimiter:
        limiter = self._limiters.get(resource.label)
        if limiter is None:  # created here: a limiter needs the running event loop
            limiter = anyio.CapacityLimiter(THREADS_PER_RESOURCE)
            self._limiters[resource.label] = limiter
        return limiter

    async def _in_thread(
        self, func: Callable[..., _T], *args: Any, resource: Resource | None = None
    ) -> _T:
        """Run ``func`` in a worker thread (one of ``resource``'s own, if given),
        giving up after ``request_timeout``."""
        limiter = None if resource is None else self._limiter(resource)
        with anyio.fail_after(self.config.request_timeout):
            return await anyio.to_thread.run_sync(
                func, *args, abandon_on_cancel=True, limiter=limiter
            )

    def _client(self, request: Request) -> ClientConfig:
        client = self.clients.authenticate(request.headers.get("authorization"))
        if client is None:
            raise _RefusalError(
                error(401, "unauthorized", "send a valid client key: Authorization: Bearer KEY")
            )
        request.scope[_CLIENT] = client.name
        return client

    def _resource(self, request: Request, kind: str = ACCESS_TOKEN) -> tuple[str, Resource]:
        """Authenticate, check the path, the scope and the resource."""
        client = self._client(request)
        app_id = request.path_params["app_id"]
        if not APP_ID_PATTERN.fullmatch(app_id):
            raise _RefusalError(
                error(400, "bad_request", "an app id is 1-64 letters, digits, '_' or '-'")
            )
        if not client.may_read(app_id):
            raise _RefusalError(error(403, "forbidden", "this app is not in this client's scope"))
        if self.config.app(app_id) is None:
            raise _RefusalError(error(404, "unknown_app", "no app with this id is configured"))
        if kind != ACCESS_TOKEN and not _KIND.fullmatch(kind):
            raise _RefusalError(error(400, "bad_request", "a ticket kind is like jsapi or wx_card"))
        resource = self.service.resource(app_id, kind)
        if resource is None:
            raise _RefusalError(
                error(404, "unknown_ticket", f"{kind} tickets are not enabled for this app")
            )
        request.scope[_PATH] = request.scope["path"]
        return client.name, resource

    async def _get(self, resource: Resource) -> Token:
        """The token to answer: fresh from memory on the event loop, or from the
        resource's one flight (a worker thread every concurrent read shares, so a
        WeChat hang or a hung store costs one thread, not one per read). While a
        flight runs, or a failed one waits to be retried, the token last handed out
        is answered if still valid; else the read waits up to ``request_timeout``."""
        token = resource.cached()
        if token is not None:
            return token
        if self.tasks is None:
            try:
                return await self._in_thread(resource.get, resource=resource)
            except (WxAuthError, TimeoutError) as exc:
                raise _RefusalError(_unavailable(exc, resource.label)) from None
        label = resource.label
        remembered = resource.remembered()
        flight = self._flights.get(label)
        if flight is None and (
            remembered is None or time.monotonic() >= self._retry_at.get(label, 0.0)
        ):
            flight = self._flights[label] = _Flight()
            self.tasks.start_soon(self._fly, resource, flight)
        if remembered is not None:
            return remembered
        assert flight is not None
        with anyio.move_on_after(self.config.request_timeout):
            await flight.done.wait()
        if flight.token is not None:
            return flight.token
        if flight.error is None or not flight.done.is_set():
            log, flight.timeout_logged = not flight.timeout_logged, True
            raise _RefusalError(_unavailable(TimeoutError(), label, log=log))
        if not isinstance(flight.error, WxAuthError):
            raise _RefusalError(error(500, "internal_error", "internal error; see the server log"))
        raise _RefusalError(_unavailable(flight.error, label, log=False))

    async def _fly(self, resource: Resource, flight: _Flight) -> None:
        """Get ``resource``'s token in a worker thread for every read waiting on
        ``flight``; log a failure once."""
        label = resource.label
        try:
            flight.token = await anyio.to_thread.run_sync(
                resource.get, abandon_on_cancel=True, limiter=self._limiter(resource)
            )
        except WxAuthError as exc:
            flight.error = exc
            _unavailable(exc, label)
        except Exception as exc:
            flight.error = exc
            logger.error("%s: getting the token failed", label, exc_info=exc)
        finally:
            if flight.token is None or not resource.store_ok:
                # Failed, or answered from memory because the store did: the next try
                # waits (a store that refuses at once is not asked on every read).
                self._retry_at[label] = time.monotonic() + _FLIGHT_RETRY
            else:
                self._retry_at.pop(label, None)
            if self._flights.get(label) is flight:
                del self._flights[label]
            flight.done.set()

    async def _reported(self, request: Request, field: str) -> Secret:
        """The ``{field: value}`` of the body, checked (wrapped: no frame of a failure
        after this shows the token in clear); else a 4xx."""
        length = request.headers.get("content-length")
        if length is not None and not (length.isascii() and length.isdigit()):
            raise _RefusalError(_hang_up(error(400, "bad_request", "bad Content-Length")))
        too_large = f"the body must be at most {MAX_BODY} bytes"
        if length is not None and int(length) > MAX_BODY:
            raise _RefusalError(_hang_up(error(413, "body_too_large", too_large)))
        chunks: list[bytes] = []
        size = 0
        with anyio.move_on_after(self.config.request_timeout) as scope:
            try:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > MAX_BODY:
                        raise _RefusalError(_hang_up(error(413, "body_too_large", too_large)))
                    chunks.append(chunk)
            except ClientDisconnect:
                # Gone before its body was whole: nobody to answer, nothing to log as an
                # error (a traceback would keep the half-read body in its frames).
                chunks.clear()
                raise _RefusalError(
                    error(400, "bad_request", "the client left before its body arrived")
                ) from None
        if scope.cancelled_caught:
            raise _RefusalError(
                _hang_up(error(400, "bad_request", "the body did not arrive in time"))
            )
        want = f'the body must be a JSON object {{"{field}": "..."}}'
        try:
            data = json.loads(
                b"".join(chunks), object_pairs_hook=_no_duplicates, parse_constant=_no_constants
            )
        except (ValueError, RecursionError):
            raise _RefusalError(error(400, "bad_request", f"malformed JSON: {want}")) from None
        if not isinstance(data, dict) or set(data) != {field}:
            raise _RefusalError(error(400, "bad_request", f"{want}, with no other field"))
        if not isinstance(data[field], str) or not _REPORTED.fullmatch(data[field]):
            raise _RefusalError(
                error(400, "bad_request", f"{field} must be a string of 1-2048 visible ASCII")
            )
        return Secret(data.pop(field))

    # -- endpoints -------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        """The process is up."""
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        """The store answers and every app has a valid token."""
        try:
            found = await self._in_thread(self.service.readiness)
        except TimeoutError:
            found = None
        if found is not None and found.ready:
            return JSONResponse({"status": "ready", "apps": found.apps})
        store = "unknown" if found is None else ("ok" if found.store_ok else "unavailable")
        ready = 0 if found is None else found.apps_ready
        apps = len(self.config.apps)
        return error(
            503, "not_ready", f"store {store}; {ready} of {apps} apps have a valid token",
            retry_after=_RETRY_STORE, store=store, apps_ready=ready, apps=apps,
        )  # fmt: skip

    async def metrics(self, request: Request) -> Response:
        """Prometheus text. Unless ``public_metrics = true``, it needs a client key: a
        client of every app (``"*"``) or of none (a monitoring key) reads every series;
        a client of some apps reads only the series of its apps and its own requests,
        since the metrics name app ids that it must not learn."""
        scope: ClientConfig | None = None
        if not self.config.public_metrics:
            client = self._client(request)
            if client.apps and not client.all_apps:
                scope = client
        try:
            content = await self._in_thread(self.prometheus.render)
        except TimeoutError:
            return error(503, "store_unavailable", "metrics timed out", retry_after=_RETRY_STORE)
        from prometheus_client import CONTENT_TYPE_LATEST

        if scope is not None:
            content = _series_of(content, scope)
        return Response(content, media_type=CONTENT_TYPE_LATEST)

    async def get_token(self, request: Request) -> Response:
        """``GET /v1/apps/{app_id}/token``."""
        _, resource = self._resource(request)
        return _answer(resource, await self._get(resource))

    async def invalidate_token(self, request: Request) -> Response:
        """``POST /v1/apps/{app_id}/token/invalidate`` with ``{"access_token": ...}``."""
        client, resource = self._resource(request)
        return await self._invalidate(request, client, resource, "access_token")

    async def get_ticket(self, request: Request) -> Response:
        """``GET /v1/apps/{app_id}/ticket/{kind}``."""
        _, resource = self._resource(request, request.path_params["kind"])
        return _answer(resource, await self._get(resource))

    async def invalidate_ticket(self, request: Request) -> Response:
        """``POST /v1/apps/{app_id}/ticket/{kind}/invalidate`` with ``{"ticket": ...}``."""
        client, resource = self._resource(request, request.path_params["kind"])
        return await self._invalidate(request, client, resource, "ticket")

    async def _invalidate(
        self, request: Request, client: str, resource: Resource, field: str
    ) -> Response:
        value = await self._reported(request, field)
        wait = self.limiter.wait(client, resource.label)
        try:
            if wait > 0:
                if await self._in_thread(resource.is_current, value, resource=resource):
                    logger.warning(
                        "client=%s: invalidation of %s refused: over its limit", client,
                        resource.label,
                    )  # fmt: skip
                    return error(
                        429, "too_many_invalidations",
                        "this client dropped this token too often; retry later",
                        retry_after=wait,
                    )  # fmt: skip
                return _answer(resource, await self._get(resource), invalidated=False)
            dropped = await self._in_thread(resource.invalidate, value, resource=resource)
        except (WxAuthError, TimeoutError) as exc:
            return _unavailable(exc, resource.label)
        if dropped:
            self.limiter.charge(client, resource.label)
            logger.info(
                "client=%s invalidated %s (%s)",
                client,
                resource.label,
                redact_token(value.get_secret_value()),
            )
        return _answer(resource, await self._get(resource), invalidated=dropped)


def _wrap(
    handler: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except _RefusalError as failure:
            return failure.response

    endpoint.__doc__ = handler.__doc__
    return endpoint


class _AccessLog:
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
            path = scope.get(_PATH) or (route if route != "other" else "-")
            log_request(self.metrics, route, method, status, scope.get(_CLIENT, "-"), path, started)


class _ServiceApp(Starlette):
    """The service's Starlette app, with :class:`TokenFastPath` in front: a fresh
    token read is answered before Starlette's routing, everything else by it."""

    fast_path: TokenFastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self.fast_path
        if fast is not None and scope["type"] == "http" and await fast(scope, receive, send):
            return
        await super().__call__(scope, receive, send)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error(404, "not_found", "no such endpoint")
    if exc.status_code == 405:
        response = error(405, "method_not_allowed", "method not allowed here")
        if exc.headers and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    return error(exc.status_code, "bad_request", "bad request")


async def _internal_error(request: Request, exc: Exception) -> Response:
    return error(500, "internal_error", "internal error; see the server log")


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
    api = _Api(config, service, limiter)
    routes = [  # the most frequent first: Starlette tries them in order
        Route(TOKEN_ROUTE, _wrap(api.get_token), methods=["GET"]),
        Route("/healthz", _wrap(api.healthz), methods=["GET"]),
        Route("/readyz", _wrap(api.readyz), methods=["GET"]),
        Route("/metrics", _wrap(api.metrics), methods=["GET"]),
        Route("/v1/apps/{app_id}/token/invalidate", _wrap(api.invalidate_token), methods=["POST"]),
        Route("/v1/apps/{app_id}/ticket/{kind}", _wrap(api.get_ticket), methods=["GET"]),
        Route(
            "/v1/apps/{app_id}/ticket/{kind}/invalidate",
            _wrap(api.invalidate_ticket),
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
                api.tasks = tasks
                try:
                    yield
                finally:
                    api.tasks = None
                    tasks.cancel_scope.cancel()
        finally:
            await anyio.to_thread.run_sync(service.close)

    _redact_server_logs()
    app = _ServiceApp(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(_AccessLog, metrics=api.prometheus, routes=templates)],
        exception_handlers={HTTPException: _http_error, Exception: _internal_error},
    )
    # /v1/apps/X/token/ is a 404, not a redirect a client would follow with its key.
    app.router.redirect_slashes = False
    app.state.service = service
    app.fast_path = TokenFastPath(service, api.clients, api.prometheus)
    return app


class _ServerLogFilter(logging.Filter):
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


def _redact_server_logs() -> None:
    """uvicorn's access log shows a request's path and query: mask any token, secret
    or client key put there."""
    redacting = _ServerLogFilter()
    for name in ("uvicorn.access", "uvicorn.error"):
        log = logging.getLogger(name)
        for old in [f for f in log.filters if isinstance(f, RedactingFilter)]:
            log.removeFilter(old)  # what earlier versions installed: ours does it too
        if not any(isinstance(f, _ServerLogFilter) for f in log.filters):
            log.addFilter(redacting)


def app_from_env() -> Starlette:
    """:func:`create_app` for the config file that ``$WXAUTH_SERVER_CONFIG`` names: the
    factory of ``uvicorn --factory wxauth.server:app_from_env`` (and gunicorn's uvicorn
    workers). Unless logging is configured, wxauth's log lines (the access log among
    them) go to stderr at INFO. Raises :class:`ConfigError` when it is unset or wrong."""
    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise ConfigError(f"set {CONFIG_ENV} to the path of the service's TOML config")
    app = create_app(load_config(path))
    _log_somewhere()
    return app


def _log_somewhere() -> None:
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


_APP_LABEL = re.compile(rb'[{,]app="([^"]*)"')
_CLIENT_LABEL = re.compile(rb'[{,]client="([^"]*)"')


def _series_of(text: bytes, client: ClientConfig) -> bytes:
    """The exposition ``text`` without the samples of apps outside ``client``'s scope
    and of other clients' requests (``# HELP`` / ``# TYPE`` lines stay)."""
    name = client.name.encode("utf-8")
    kept = []
    for line in text.splitlines(keepends=True):
        if not line.startswith(b"#"):
            app = _APP_LABEL.search(line)
            if app is not None and not client.may_read(app.group(1).decode("utf-8")):
                continue
            other = _CLIENT_LABEL.search(line)
            if other is not None and other.group(1) != name:
                continue
        kept.append(line)
    return b"".join(kept)
