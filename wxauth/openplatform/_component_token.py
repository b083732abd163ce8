"""The component token of a platform, and the calls made with it.

:class:`ComponentTokenSource` fetches ``component_access_token`` with the component
secret and the newest stored ``component_verify_ticket``. :class:`ComponentTokenBase`
is the bottom layer of :class:`~wxauth.openplatform.ComponentTokenManager`: the component
token's :class:`~wxauth.TokenManager` behind ``get_token``/``invalidate`` (so the
platform is a :class:`~wxauth.sources.TokenProvider`), and :meth:`~ComponentTokenBase._call`,
which POSTs to a component endpoint with that token and heals a retired one once
(compare-and-invalidate, fetch, send again). The layers above it: the re-read of the
authorizer list (:mod:`._recovery`), the authorizers (:mod:`._authorizations`), the
pushes (:mod:`._pushes`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from .._config import ManagerStats
from .._errors import EXPIRED_ERRCODES, StoreError, WeChatAPIError
from .._fetch import FetchContext, fetch_token_answer
from .._manager import TokenManager
from .._protocol import TokenRequest, parse_token_answer
from .._redact import redact_token
from .._secret import Secret
from .._token import Token
from ..sources import DEFAULT_API_BASE, TokenSource, _require_secret
from ..stores._base import StoreLock, TokenStore
from ..transport import Transport
from ._errors import ComponentTicketError
from ._protocol import (
    COMPONENT_TOKEN,
    TICKET_RECORD,
    PlatformKeys,
    StoredTicket,
    check_appid,
    component_api_request,
    component_error,
    component_token_request,
    parse_ticket_record,
    refused_push_hint,
    start_push_ticket_request,
)

__all__ = ["ComponentTokenBase", "ComponentTokenSource", "release_quietly", "send_component"]

logger = logging.getLogger("wxauth")


def _no_ticket(component_appid: str, hint: str) -> ComponentTicketError:
    return ComponentTicketError(
        61006,
        f"wxauth: no component_verify_ticket stored for component appid={component_appid}: "
        "wait for WeChat's next push to the platform's URL (every 10 minutes, handled by "
        f"handle_push) or call start_push_ticket(){hint}",
    )


class ComponentTokenSource(TokenSource):
    """``POST /cgi-bin/component/api_component_token`` with the component secret and
    the newest stored ``component_verify_ticket`` (a meta record of the store, written
    by :meth:`ComponentTokenManager.handle_push`).

    No ticket stored (or none stored in the last 12 hours), 61005 (expired) or 61006
    (invalid):
    :class:`~wxauth.openplatform.ComponentTicketError` (saying so when the last push
    was refused for this host's clock). The store key is
    ``token:component:<component appid>``. There is no stable variant for component
    tokens. Only :meth:`fetch` (sync) exists: an async manager runs it in a worker
    thread.
    """

    name = "component"
    path = COMPONENT_TOKEN

    def __init__(
        self,
        component_appid: str,
        component_secret: str | Secret,
        *,
        api_base: str = DEFAULT_API_BASE,
    ) -> None:
        secret = _require_secret("component_secret", component_secret)  # no clear local
        self.appid = check_appid("component_appid", component_appid)
        self._secret: Secret = secret
        self.api_base = api_base.rstrip("/")
        self.keys = PlatformKeys(self.appid, self.api_base)

    @property
    def key(self) -> str:
        return self.keys.component_token

    def fetch(self, ctx: FetchContext) -> tuple[str, float]:
        # Read here rather than as a flow's ReadMeta step: the driver's frame would keep
        # the record (the ticket in clear) as a local on the traceback of a failure.
        stored = parse_ticket_record(ctx.store.get_record(self.keys.ticket, TICKET_RECORD))
        if stored is None or not stored.usable(ctx.clock()):
            raise _no_ticket(self.appid, self._hint(ctx, None))
        request = component_token_request(self.appid, self._secret, stored.ticket, self.api_base)
        failure: WeChatAPIError | None = None
        try:
            answer = fetch_token_answer(ctx, request)
        except WeChatAPIError as exc:
            failure = component_error(exc)
            if failure is None:
                raise
        else:
            return parse_token_answer(answer, self.path, field="component_access_token")
        if isinstance(failure, ComponentTicketError):
            hint = self._hint(ctx, stored)
            if hint:
                failure = ComponentTicketError(
                    failure.errcode, failure.errmsg + hint, url_path=failure.url_path
                )
        raise failure  # outside the except block: the plain error is not chained

    def _hint(self, ctx: FetchContext, stored: StoredTicket | None) -> str:
        """Why no newer ticket came, if a push was refused for this host's clock."""
        try:
            return refused_push_hint(ctx.store.get_meta(self.keys.refused_push), stored)
        except StoreError:
            return ""

    def __repr__(self) -> str:
        return f"ComponentTokenSource(appid={self.appid!r}, api_base={self.api_base!r})"


class ComponentTokenBase:
    """The component token of a platform and the calls made with it: the bottom layer
    of :class:`~wxauth.openplatform.ComponentTokenManager`, which sets the attributes
    below."""

    #: The component token's source (appid, secret, API base, store keys).
    source: ComponentTokenSource
    #: The component token's manager.
    tokens: TokenManager
    #: Where the ticket, the tokens and the refresh tokens are kept.
    store: TokenStore
    #: The store keys of the platform.
    keys: PlatformKeys
    _transport: Transport | None

    @property
    def component_appid(self) -> str:
        """The platform's appid."""
        return self.source.appid

    @property
    def api_base(self) -> str:
        """Scheme and host of the WeChat API this platform talks to."""
        return self.source.api_base

    @property
    def clock(self) -> Callable[[], float]:
        """The epoch-seconds clock (the component token manager's)."""
        return self.tokens.clock

    @property
    def key(self) -> str:
        """The store key of the component token."""
        return self.tokens.key

    @property
    def stats(self) -> ManagerStats:
        """The component token fetches' counters (:class:`~wxauth.ManagerStats`)."""
        return self.tokens.stats

    def get_token(self) -> str:
        """Return a valid ``component_access_token`` (fetched at most once at a time,
        with the stored ticket; see :meth:`wxauth.TokenManager.get_token`)."""
        return self.tokens.get_token()

    def get(self) -> Token:
        """Like :meth:`get_token`, with the token's expiry."""
        return self.tokens.get()

    def peek(self) -> Token | None:
        """The stored component token, if any, without fetching."""
        return self.tokens.peek()

    def invalidate(self, token: str) -> bool:
        """Drop the stored component token only if it is still ``token``."""
        return self.tokens.invalidate(token)

    def refresh(self) -> str:
        """Fetch a new component token now."""
        return self.tokens.refresh()

    def start_push_ticket(self) -> None:
        """Ask WeChat to (re)start pushing ``component_verify_ticket``
        (``api_start_push_ticket``): after a platform is approved, or when no ticket
        came for a while."""
        request = start_push_ticket_request(
            self.component_appid, self.source._secret, self.api_base
        )
        _, error = send_component(self._context(), request)
        if error is not None:
            raise error
        logger.info(
            "asked WeChat to push component_verify_ticket to component appid=%s",
            self.component_appid,
        )

    def _context(self) -> FetchContext:
        """What a call to a component endpoint is sent with (the component token
        manager's session, timeout, clock, retries and transport)."""
        tokens = self.tokens
        return FetchContext(
            session=tokens.session,
            timeout=tokens.timeout,
            clock=tokens.clock,
            store=self.store,
            retries=tokens.retries,
            backoff=tokens.backoff,
            transport=self._transport,
        )

    def _call(
        self,
        ctx: FetchContext,
        path: str,
        body: Mapping[str, Any],
        secrets: tuple[Secret, ...] = (),
    ) -> dict[str, Any]:
        """POST ``body`` to a component endpoint with the component token; when that
        token is rejected (40001/40014/42001), invalidate it, fetch another and send
        once more. Errcodes come back as Open Platform errors."""
        token = self.get_token()
        answer, error = send_component(
            ctx, component_api_request(self.api_base, path, token, body, secrets=secrets)
        )
        if error is None:
            assert answer is not None
            return answer
        if error.errcode not in EXPIRED_ERRCODES:
            raise error
        logger.warning(
            "%s rejected the component token of component appid=%s (%s); refreshing it and "
            "sending once more",
            path,
            self.component_appid,
            redact_token(token),
        )
        self.tokens.invalidate(token)
        token = self.get_token()
        answer, error = send_component(
            ctx, component_api_request(self.api_base, path, token, body, secrets=secrets)
        )
        if error is not None:
            raise error
        assert answer is not None
        return answer


def send_component(
    ctx: FetchContext, request: TokenRequest
) -> tuple[dict[str, Any] | None, WeChatAPIError | None]:
    """Send a component request: ``(answer, None)`` or ``(None, the Open Platform
    error)``, returned so the caller raises it outside any except block. Transport
    failures (:class:`~wxauth.TokenFetchError`) are raised."""
    try:
        return fetch_token_answer(ctx, request), None
    except WeChatAPIError as exc:
        return None, component_error(exc) or exc


def release_quietly(lock: StoreLock) -> None:
    """Release a store lock; a store that cannot be reached just lets the lease run
    out (logged)."""
    try:
        lock.release()
    except StoreError as exc:
        logger.warning("%s; the lock will expire after its lease", exc)
