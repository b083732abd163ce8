"""wxauth for httpx: ``WxAuth`` as an ``httpx.Auth``, for ``httpx.Client`` and
``httpx.AsyncClient`` alike, and the httpx transports for token requests.

Install with ``pip install 'wxauth[httpx]'``::

    async with httpx.AsyncClient(auth=WxAuth("wx1234567890", "the-app-secret")) as client:
        r = await client.post("https://api.weixin.qq.com/cgi-bin/message/custom/send", json=...)

It follows the rules of the requests ``WxAuth`` from the same code (:mod:`wxauth._hosts`,
:mod:`wxauth._protocol`): the token goes only to the API hosts of its source (and
``extra_hosts``); an answer reporting 40001/40014/42001 drops exactly that token, gets a
fresh one and re-sends the request once; the second answer is returned as it is; binary
and large answers are never read; a body that cannot be replayed is not retried. As
httpx's own documentation asks of a flow that does I/O, both ``sync_auth_flow`` and
``async_auth_flow`` are implemented: the sync flow uses a :class:`~wxauth.TokenManager`,
the async one its :class:`~wxauth.AsyncTokenManager` twin on the same store and key, so
one ``WxAuth`` used by a ``Client`` and an ``AsyncClient`` holds one token. No lock is
held across a ``yield`` of either flow.

Redirects: httpx follows them (with ``follow_redirects=True``; its default is not to)
inside one step of the flow, so an auth cannot edit the requests in between. A redirect
carries the token only if its ``Location`` does; an answer from another host after a
redirect is never read and never heals (it cannot make wxauth drop a good token). Keep
``follow_redirects=False`` on clients that carry ``WxAuth`` if the API hosts you call
may redirect elsewhere.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Generator, Iterable
from typing import Any

try:
    import anyio  # noqa: F401 - the async side needs it; say so here, not deep inside
    import httpx
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        f"wxauth.httpx needs the 'httpx' extra (httpx, anyio): pip install 'wxauth[httpx]' ({exc})"
    ) from None

from ._async_manager import AsyncTokenManager
from ._errors import CredentialError, WxAuthError
from ._hosts import Origin, token_origins, url_origin
from ._httpx_transport import AsyncHttpxTransport, HttpxTransport
from ._manager import TokenManager
from ._protocol import FULL_SCAN_LIMIT, expired_errcode_in, is_textual, set_access_token
from ._redact import redact_token
from ._secret import Secret

__all__ = ["AsyncHttpxTransport", "HttpxTransport", "WxAuth"]

logger = logging.getLogger("wxauth")


def _readable_error_body(response: httpx.Response) -> bool:
    """Whether the answer may be a WeChat error worth reading: JSON or text with a
    declared length small enough for one (streamed downloads are never read)."""
    if not is_textual(response.headers.get("Content-Type", "")):
        return False
    length = response.headers.get("Content-Length")
    return length is not None and length.isdigit() and int(length) <= FULL_SCAN_LIMIT


def _replayable(request: httpx.Request) -> bool:
    return isinstance(request.stream, httpx.ByteStream)


def _with_token(request: httpx.Request, token: str) -> None:
    request.url = httpx.URL(set_access_token(str(request.url), token))


class WxAuth(httpx.Auth):
    """Adds ``access_token`` to every request of an ``httpx.Client`` or
    ``httpx.AsyncClient`` to the API hosts of its source, and heals a rejected token
    with one refresh and one re-send.

    ``WxAuth(appid, secret, **options)`` builds a :class:`~wxauth.TokenManager` with
    ``options`` (those of ``TokenManager``; ``client=`` is the ``httpx.AsyncClient`` the
    async side fetches tokens with) and its async twin. ``WxAuth(manager=...)`` takes a
    ``TokenManager`` or an ``AsyncTokenManager`` and derives the other. ``extra_hosts``
    adds hosts that get the token, as for the requests ``WxAuth``.
    """

    requires_request_body = False
    requires_response_body = False

    def __init__(
        self,
        appid: str | None = None,
        secret: str | Secret | None = None,
        *,
        manager: TokenManager | AsyncTokenManager | None = None,
        extra_hosts: Iterable[str] = (),
        **manager_options: Any,
    ) -> None:
        if isinstance(secret, str):
            secret = Secret(secret)  # no clear local, should a line below raise
        self._sync: TokenManager | None = None
        if manager is not None:
            if appid is not None or secret is not None or manager_options:
                raise ValueError("pass either manager= or appid/secret and options, not both")
            if isinstance(manager, AsyncTokenManager):
                self.async_manager = manager
            elif isinstance(manager, TokenManager):
                self._sync = manager
                self.async_manager = AsyncTokenManager.from_sync(manager)
            else:
                raise TypeError(
                    f"manager must be a TokenManager or an AsyncTokenManager, not "
                    f"{type(manager).__name__}"
                )
        else:
            if appid is None:
                raise ValueError("WxAuth needs appid and secret (or a source=), or manager=")
            client = manager_options.pop("client", None)
            self._sync = TokenManager(appid, secret, **manager_options)
            self.async_manager = AsyncTokenManager.from_sync(self._sync, client=client)
        api_base = manager_options.get("api_base")
        self._hosts: frozenset[Origin] = token_origins(
            self.async_manager.source,
            api_base if isinstance(api_base, str) else None,
            extra_hosts,
        )

    @property
    def manager(self) -> TokenManager:
        """The sync manager (the one ``sync_auth_flow`` uses)."""
        if self._sync is None:
            self._sync = self.async_manager.to_sync()
        return self._sync

    def _applies(self, request: httpx.Request) -> bool:
        return url_origin(str(request.url)) in self._hosts

    def _can_resend(self, response: httpx.Response, code: int, token: str) -> bool:
        """Whether the rejected request can be sent again (its body replayed); logs."""
        path = response.request.url.path
        if not _replayable(response.request):
            logger.warning(
                "%s answered errcode %d, but the request body cannot be sent again: "
                "returning the response",
                path,
                code,
            )
            return False
        logger.warning(
            "%s answered errcode %d for appid=%s with token %s; refreshing and sending the "
            "request once more",
            path,
            code,
            self.async_manager.appid,
            redact_token(token),
        )
        return True

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        """The flow of an ``httpx.Client``: sets the token, heals one rejection."""
        if not self._applies(request):
            yield request
            return
        manager = self.manager
        token = manager.get_token()
        _with_token(request, token)
        response = yield request
        # After a redirect (follow_redirects=True), the answer may come from another
        # host: it is not ours to read or heal.
        if not self._applies(response.request) or not _readable_error_body(response):
            return
        response.read()
        code = expired_errcode_in(response.headers.get("Content-Type", ""), response.content)
        if code is None:
            return
        resend = self._can_resend(response, code, token)
        manager.invalidate(token)
        if not resend:
            return
        try:
            fresh = manager.get_token()
        except CredentialError:
            raise  # a configuration error (wrong secret, IP not whitelisted) must surface
        except WxAuthError as exc:
            logger.warning("%s: no fresh token to re-send with (%s)", request.url.path, exc)
            return
        if fresh != token:  # else held back after repeated rejections: the answer stands
            _with_token(request, fresh)
            yield request

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """The flow of an ``httpx.AsyncClient``: the same, awaiting the async manager
        on the event loop."""
        if not self._applies(request):
            yield request
            return
        manager = self.async_manager
        token = await manager.get_token()
        _with_token(request, token)
        response = yield request
        # After a redirect (follow_redirects=True), the answer may come from another
        # host: it is not ours to read or heal.
        if not self._applies(response.request) or not _readable_error_body(response):
            return
        await response.aread()
        code = expired_errcode_in(response.headers.get("Content-Type", ""), response.content)
        if code is None:
            return
        resend = self._can_resend(response, code, token)
        await manager.invalidate(token)
        if not resend:
            return
        try:
            fresh = await manager.get_token()
        except CredentialError:
            raise
        except WxAuthError as exc:
            logger.warning("%s: no fresh token to re-send with (%s)", request.url.path, exc)
            return
        if fresh != token:
            _with_token(request, fresh)
            yield request

    def __repr__(self) -> str:
        manager = getattr(self, "async_manager", None)
        return f"WxAuth(appid={getattr(manager, 'appid', None)!r})"
