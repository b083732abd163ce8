"""Tickets: the JS-SDK ``jsapi_ticket``, the card ``api_ticket`` and WeCom's tickets, on
the machinery of the access token.

A ticket is fetched *with* an access token, lives about 7200 s, has a tight call quota
and must be cached globally: the access token's problem one level up. So a
:class:`TicketManager` is a :class:`~wxauth.TokenManager` whose source is a
:class:`TicketSource`: the same store (under a key of its own), single flight across
threads, processes and hosts with the same lease lock, refresh ahead, opt-in background
refresh, compare-and-invalidate, budgets, and never an empty or error ticket cached.

When a ticket request answers that the access token under it is bad (40001, 40014,
42001), that access token is invalidated, a fresh one fetched, and the ticket asked for
once more (once, never a loop).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ._errors import EXPIRED_ERRCODES, WeChatAPIError
from ._fetch import FetchContext, fetch_token_answer
from ._manager import TokenManager
from ._protocol import TokenRequest, parse_token_answer, ticket_request
from ._redact import redact_token
from .sources import DEFAULT_API_BASE, WECOM_API_BASE, TokenSource, WeComTokenSource
from .stores._base import TokenStore

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._async_manager import AsyncTokenManager

    #: Sends one ticket request with the async manager's bounded retry.
    AsyncSend = Callable[[TokenRequest], Awaitable[dict[str, Any]]]

__all__ = [
    "TICKET_KINDS",
    "WECOM_TICKET_KINDS",
    "AsyncTicketManager",
    "AsyncTicketSource",
    "TicketManager",
    "TicketSource",
]

logger = logging.getLogger("wxauth")

#: Official Account / Mini Program ticket kinds: ``type=`` of ``/cgi-bin/ticket/getticket``.
TICKET_KINDS = ("jsapi", "wx_card")
#: WeCom ticket kinds: the corp's ``jsapi`` ticket (``/cgi-bin/get_jsapi_ticket``, for
#: ``wx.config``) and the application's ``agent_config`` ticket (``/cgi-bin/ticket/get``,
#: for ``wx.agentConfig``).
WECOM_TICKET_KINDS = ("jsapi", "agent_config")

_PATHS = {
    ("wechat", "jsapi"): ("/cgi-bin/ticket/getticket", "jsapi"),
    ("wechat", "wx_card"): ("/cgi-bin/ticket/getticket", "wx_card"),
    ("wecom", "jsapi"): ("/cgi-bin/get_jsapi_ticket", None),
    ("wecom", "agent_config"): ("/cgi-bin/ticket/get", "agent_config"),
}


class TicketSource(TokenSource):
    """Fetches a ticket of ``kind`` with the access token of ``tokens``.

    The store key is ``ticket:<kind>:<the token's key>``: one ticket per app (and per
    WeCom application) and kind, never the secret.
    """

    name = "ticket"

    def __init__(self, tokens: TokenManager, kind: str) -> None:
        self.tokens = tokens
        self._endpoint(tokens, kind)

    def _endpoint(self, tokens: TokenManager | AsyncTokenManager, kind: str) -> None:
        """Check ``kind`` for ``tokens``' family and find the ticket endpoint."""
        family = "wecom" if isinstance(tokens.source, WeComTokenSource) else "wechat"
        if (family, kind) not in _PATHS:
            kinds = WECOM_TICKET_KINDS if family == "wecom" else TICKET_KINDS
            raise ValueError(f"kind must be one of {kinds} for a {family} app, not {kind!r}")
        self.kind = kind
        self.appid = tokens.appid
        self.path, self._type = _PATHS[family, kind]
        default = WECOM_API_BASE if family == "wecom" else DEFAULT_API_BASE
        self.api_base = str(getattr(tokens.source, "api_base", default)).rstrip("/")
        self._key = f"ticket:{kind}:{tokens.key}"

    @property
    def key(self) -> str:
        return self._key

    def fetch(self, ctx: FetchContext) -> tuple[str, float]:
        token = self.tokens.get_token()
        request = self._request(token)
        try:
            answer = fetch_token_answer(ctx, request)
        except WeChatAPIError as exc:
            if exc.errcode not in EXPIRED_ERRCODES:
                raise
            stale = token
        else:
            return parse_token_answer(answer, self.path, field="ticket")
        # Out of the except block: the second answer's error is raised on its own.
        self._healing(stale)
        self.tokens.invalidate(stale)
        token = self.tokens.get_token()
        request = self._request(token)
        return parse_token_answer(fetch_token_answer(ctx, request), self.path, field="ticket")

    def _request(self, token: str) -> TokenRequest:
        return ticket_request(self.api_base, self.path, token, self._type)

    def _healing(self, stale: str) -> None:
        logger.warning(
            "%s rejected the access token of appid=%s (%s); refreshing it and asking "
            "for the %s ticket once more",
            self.path,
            self.appid,
            redact_token(stale),
            self.kind,
        )

    def __repr__(self) -> str:
        return f"TicketSource(appid={self.appid!r}, kind={self.kind!r})"


class TicketManager:
    """Fetches, caches and refreshes one kind of ticket of one app.

    ``TicketManager(tokens, "jsapi")`` (or ``"wx_card"``; for a WeCom manager ``"jsapi"``
    or ``"agent_config"``). The ticket lives in ``tokens``' store unless ``store=`` names
    another; the other keyword options are those of :class:`~wxauth.TokenManager`
    (``refresh_margin``, ``background_refresh``, ``max_fetches_per_day``, ...); the
    clock and the HTTP session are ``tokens``' unless given.
    """

    def __init__(
        self,
        tokens: TokenManager,
        kind: str,
        *,
        store: TokenStore | None = None,
        refresh_margin: float = 300.0,
        **options: Any,
    ) -> None:
        if not isinstance(tokens, TokenManager):
            raise TypeError(f"tokens must be a TokenManager, not {type(tokens).__name__}")
        options.setdefault("clock", tokens.clock)
        options.setdefault("session", tokens.session)
        options.setdefault("timeout", tokens.timeout)
        self.tokens = tokens
        self.kind = kind
        self.manager = TokenManager(
            tokens.appid,
            source=TicketSource(tokens, kind),
            store=store if store is not None else tokens.store,
            refresh_margin=refresh_margin,
            **options,
        )

    @property
    def appid(self) -> str:
        """The app's AppID (WeCom: the corpid)."""
        return self.tokens.appid

    @property
    def key(self) -> str:
        """The store key of the ticket."""
        return self.manager.key

    @property
    def stats(self) -> Any:
        """The ticket fetches' counters (:class:`~wxauth.ManagerStats`)."""
        return self.manager.stats

    def get_ticket(self) -> str:
        """Return a valid ticket, fetching one only when none is cached or the cached
        one is within ``refresh_margin`` of expiry."""
        return self.manager.get_token()

    def invalidate(self, ticket: str) -> bool:
        """Drop the cached ticket only if it is still ``ticket`` (a page reported
        "invalid signature" with it); say whether it did."""
        return self.manager.invalidate(ticket)

    def refresh(self) -> str:
        """Fetch a new ticket now and return it."""
        return self.manager.refresh()

    def close(self) -> None:
        """Stop the background refresh, if any."""
        self.manager.close()

    def __enter__(self) -> TicketManager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TicketManager(appid={self.appid!r}, kind={self.kind!r})"


class AsyncTicketSource(TicketSource):
    """:class:`TicketSource` for an :class:`~wxauth.AsyncTokenManager`: the access
    token is awaited, and the ticket request goes through the async manager's
    transport. It has no sync ``fetch``."""

    def __init__(self, tokens: AsyncTokenManager, kind: str) -> None:
        self.async_tokens = tokens
        self._endpoint(tokens, kind)

    def fetch(self, ctx: FetchContext) -> tuple[str, float]:
        raise TypeError("an AsyncTicketSource is fetched by an AsyncTokenManager only")

    async def afetch_with(self, send: AsyncSend) -> tuple[str, float]:
        """Fetch the ticket, sending its request with ``send`` (the async manager's
        bounded retry); heal a rejected access token once, as :meth:`fetch` does."""
        tokens = self.async_tokens
        token = await tokens.get_token()
        try:
            answer = await send(self._request(token))
        except WeChatAPIError as exc:
            if exc.errcode not in EXPIRED_ERRCODES:
                raise
            stale = token
        else:
            return parse_token_answer(answer, self.path, field="ticket")
        self._healing(stale)
        await tokens.invalidate(stale)
        token = await tokens.get_token()
        answer = await send(self._request(token))
        return parse_token_answer(answer, self.path, field="ticket")


class AsyncTicketManager:
    """:class:`TicketManager` for ``async`` code, on an :class:`~wxauth.AsyncTokenManager`:
    ``await get_ticket()``, ``await invalidate(ticket)``, ``await refresh()``,
    ``async with`` and ``aclose()``. The ticket lives in ``tokens``' store unless
    ``store=`` names another, and token requests go through ``tokens``' transport."""

    def __init__(
        self,
        tokens: AsyncTokenManager,
        kind: str,
        *,
        store: Any = None,
        refresh_margin: float = 300.0,
        **options: Any,
    ) -> None:
        from ._async_manager import AsyncTokenManager

        if not isinstance(tokens, AsyncTokenManager):
            raise TypeError(f"tokens must be an AsyncTokenManager, not {type(tokens).__name__}")
        options.setdefault("clock", tokens.clock)
        options.setdefault("timeout", tokens.timeout)
        options.setdefault("transport", tokens._transport_now())
        self.tokens = tokens
        self.kind = kind
        self.manager = AsyncTokenManager(
            tokens.appid,
            source=AsyncTicketSource(tokens, kind),
            store=store if store is not None else tokens.store,
            refresh_margin=refresh_margin,
            **options,
        )

    @property
    def appid(self) -> str:
        """The app's AppID (WeCom: the corpid)."""
        return self.tokens.appid

    async def get_ticket(self) -> str:
        """Return a valid ticket (see :meth:`TicketManager.get_ticket`)."""
        return await self.manager.get_token()

    async def invalidate(self, ticket: str) -> bool:
        """Drop the cached ticket only if it is still ``ticket``; say whether it did."""
        return await self.manager.invalidate(ticket)

    async def refresh(self) -> str:
        """Fetch a new ticket now and return it."""
        return await self.manager.refresh()

    async def aclose(self) -> None:
        """Stop the background refresh, if any."""
        await self.manager.aclose()

    async def __aenter__(self) -> AsyncTicketManager:
        await self.manager.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.manager.__aexit__(None, None, None)

    def __repr__(self) -> str:
        return f"AsyncTicketManager(appid={self.appid!r}, kind={self.kind!r})"
