"""The token service's request handlers: each authenticates the client key, then
checks the app id, the client's scope and the resource (in the order ``_app`` states),
and answers a token, a ticket, an invalidation, the health or readiness check, or the
Prometheus text (of only the client's apps, for a client of some apps).
"""

from __future__ import annotations

import logging
import re

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .._errors import WxAuthError
from .._redact import redact_token
from ._body import read_reported
from ._clients import ClientDirectory, InvalidationLimiter
from ._config import APP_ID_PATTERN, ClientConfig, ServerConfig
from ._logs import SCOPE_CLIENT, SCOPE_PATH
from ._metrics import ServiceMetrics
from ._reads import TokenReads
from ._responses import RETRY_STORE, RefusalError, answer, error, unavailable
from ._service import ACCESS_TOKEN, Resource, TokenService

__all__ = ["Handlers"]

logger = logging.getLogger("wxauth.server")

_KIND = re.compile(r"[a-z_]{1,32}")


class Handlers:
    """The request handlers, over one service."""

    def __init__(
        self, config: ServerConfig, service: TokenService, limiter: InvalidationLimiter
    ) -> None:
        self.config = config
        self.service = service
        self.clients = ClientDirectory(config.clients)
        self.limiter = limiter
        self.prometheus = ServiceMetrics(service)
        #: Gets the tokens and runs the blocking calls (the lifespan gives it its tasks).
        self.reads = TokenReads(config.request_timeout)

    # -- helpers ---------------------------------------------------------------------

    def _client(self, request: Request) -> ClientConfig:
        client = self.clients.authenticate(request.headers.get("authorization"))
        if client is None:
            raise RefusalError(
                error(401, "unauthorized", "send a valid client key: Authorization: Bearer KEY")
            )
        request.scope[SCOPE_CLIENT] = client.name
        return client

    def _resource(self, request: Request, kind: str = ACCESS_TOKEN) -> tuple[str, Resource]:
        """Authenticate, check the path, the scope and the resource."""
        client = self._client(request)
        app_id = request.path_params["app_id"]
        if not APP_ID_PATTERN.fullmatch(app_id):
            raise RefusalError(
                error(400, "bad_request", "an app id is 1-64 letters, digits, '_' or '-'")
            )
        if not client.may_read(app_id):
            raise RefusalError(error(403, "forbidden", "this app is not in this client's scope"))
        if self.config.app(app_id) is None:
            raise RefusalError(error(404, "unknown_app", "no app with this id is configured"))
        if kind != ACCESS_TOKEN and not _KIND.fullmatch(kind):
            raise RefusalError(error(400, "bad_request", "a ticket kind is like jsapi or wx_card"))
        resource = self.service.resource(app_id, kind)
        if resource is None:
            raise RefusalError(
                error(404, "unknown_ticket", f"{kind} tickets are not enabled for this app")
            )
        request.scope[SCOPE_PATH] = request.scope["path"]
        return client.name, resource

    # -- endpoints -------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        """The process is up."""
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        """The store answers and every app has a valid token."""
        try:
            found = await self.reads.in_thread(self.service.readiness)
        except TimeoutError:
            found = None
        if found is not None and found.ready:
            return JSONResponse({"status": "ready", "apps": found.apps})
        store = "unknown" if found is None else ("ok" if found.store_ok else "unavailable")
        ready = 0 if found is None else found.apps_ready
        apps = len(self.config.apps)
        return error(
            503, "not_ready", f"store {store}; {ready} of {apps} apps have a valid token",
            retry_after=RETRY_STORE, store=store, apps_ready=ready, apps=apps,
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
            content = await self.reads.in_thread(self.prometheus.render)
        except TimeoutError:
            return error(503, "store_unavailable", "metrics timed out", retry_after=RETRY_STORE)
        from prometheus_client import CONTENT_TYPE_LATEST

        if scope is not None:
            content = _series_of(content, scope)
        return Response(content, media_type=CONTENT_TYPE_LATEST)

    async def get_token(self, request: Request) -> Response:
        """``GET /v1/apps/{app_id}/token``."""
        _, resource = self._resource(request)
        return answer(resource, await self.reads.get(resource))

    async def invalidate_token(self, request: Request) -> Response:
        """``POST /v1/apps/{app_id}/token/invalidate`` with ``{"access_token": ...}``."""
        client, resource = self._resource(request)
        return await self._invalidate(request, client, resource, "access_token")

    async def get_ticket(self, request: Request) -> Response:
        """``GET /v1/apps/{app_id}/ticket/{kind}``."""
        _, resource = self._resource(request, request.path_params["kind"])
        return answer(resource, await self.reads.get(resource))

    async def invalidate_ticket(self, request: Request) -> Response:
        """``POST /v1/apps/{app_id}/ticket/{kind}/invalidate`` with ``{"ticket": ...}``."""
        client, resource = self._resource(request, request.path_params["kind"])
        return await self._invalidate(request, client, resource, "ticket")

    async def _invalidate(
        self, request: Request, client: str, resource: Resource, field: str
    ) -> Response:
        value = await read_reported(request, field, self.config.request_timeout)
        wait = self.limiter.wait(client, resource.label)
        try:
            if wait > 0:
                if await self.reads.in_thread(resource.is_current, value, resource=resource):
                    logger.warning(
                        "client=%s: invalidation of %s refused: over its limit", client,
                        resource.label,
                    )  # fmt: skip
                    return error(
                        429, "too_many_invalidations",
                        "this client dropped this token too often; retry later",
                        retry_after=wait,
                    )  # fmt: skip
                return answer(resource, await self.reads.get(resource), invalidated=False)
            dropped = await self.reads.in_thread(resource.invalidate, value, resource=resource)
        except (WxAuthError, TimeoutError) as exc:
            return unavailable(exc, resource.label)
        if dropped:
            self.limiter.charge(client, resource.label)
            logger.info(
                "client=%s invalidated %s (%s)",
                client,
                resource.label,
                redact_token(value.get_secret_value()),
            )
        return answer(resource, await self.reads.get(resource), invalidated=dropped)


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
