"""The authorizers of a platform: their managers, their codes exchanged, their
cancellations.

An authorization code (from the merchant's redirect, or an ``authorized`` push) is
exchanged with ``api_query_auth`` for the authorizer's refresh token, kept as a durable
record, and its first access token, kept in the store. A cancellation (an
``unauthorized`` push) leaves a record too, with no refresh token: an exchange whose
answer was on its way when the cancellation was handled then stores nothing, and an
older event never replaces a newer one (push ``CreateTime`` against push ``CreateTime``).
Each authorizer gets one :class:`~wxauth.TokenManager`, built on demand and kept in a
bounded LRU.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cachetools import LRUCache

from .._errors import TokenFetchError
from .._manager import TokenManager
from .._protocol import parse_token_answer
from .._secret import Secret
from .._token import Token
from ._authorizer import AuthorizerTokenSource
from ._component_token import release_quietly
from ._errors import AuthorizerNotAuthorizedError
from ._protocol import (
    PRE_AUTH_CODE,
    QUERY_AUTH,
    PreAuthCode,
    authorization_url,
    check_appid,
    check_authorization_options,
    parse_pre_auth_code,
    take_secret,
)
from ._recovery import RefreshTokenRecovery

__all__ = [
    "DEFAULT_MAX_AUTHORIZER_MANAGERS",
    "TOKEN_WRITE_WAIT",
    "Authorization",
    "AuthorizerRegistry",
]

logger = logging.getLogger("wxauth")

#: How many authorizer managers a platform keeps built (least recently used first out):
#: 100,000 authorizers never mean 100,000 live managers. A manager dropped from here
#: keeps working for whoever holds it; the token lives in the store either way.
DEFAULT_MAX_AUTHORIZER_MANAGERS = 1024
#: The longest a push waits for another push's ticket write, or an authorization's
#: token write waits for a fetch of that authorizer's token, in seconds.
TOKEN_WRITE_WAIT = 5.0


@dataclass(frozen=True)
class Authorization:
    """An authorization code exchanged (:meth:`ComponentTokenManager.query_auth`): the
    authorizer and the permission sets (``func_info`` ids) it granted. The tokens are
    in the store, not here."""

    authorizer_appid: str
    permissions: tuple[int, ...] = ()


class AuthorizerRegistry(RefreshTokenRecovery):
    """The authorizers of a platform: a layer of
    :class:`~wxauth.openplatform.ComponentTokenManager`."""

    _managers: LRUCache[str, TokenManager]
    _managers_lock: threading.Lock
    _authorizer_options: dict[str, Any]

    def authorizer(self, authorizer_appid: str) -> TokenManager:
        """The :class:`~wxauth.TokenManager` of an authorizer's access token, usable
        wherever one is (``WxAuth(manager=...)``, ``with_access_token``, the httpx
        auth). Same store and options as the platform, no background thread; built
        once and kept (the least recently used dropped past
        ``max_authorizer_managers``).

        Its ``get_token()`` raises
        :class:`~wxauth.openplatform.AuthorizerNotAuthorizedError` for an account that
        never authorized the platform (or cancelled)."""
        appid = check_appid("authorizer_appid", authorizer_appid)
        with self._managers_lock:
            manager = self._managers.get(appid)
            if manager is None:
                manager = TokenManager(
                    appid,
                    source=AuthorizerTokenSource(self, appid),
                    store=self.store,
                    **self._authorizer_options,
                )
                self._managers[appid] = manager
        return manager

    def authorizer_appids(self) -> list[str]:
        """The appids of the authorizers whose refresh token is stored, sorted."""
        return self.refresh_tokens.appids()

    def has_authorizer(self, authorizer_appid: str) -> bool:
        """Whether a refresh token of ``authorizer_appid`` is stored (one record read)."""
        stored = self.refresh_tokens.get(authorizer_appid)
        return stored is not None and stored.token is not None

    def recover_authorizers(self) -> list[str]:
        """Re-read the authorizer list (:meth:`recover_refresh_tokens`) and return the
        appids with a stored refresh token: for a fleet whose schedule was lost."""
        self.recover_refresh_tokens(reason="the authorizer registry was empty")
        return self.authorizer_appids()

    def create_pre_auth_code(self) -> PreAuthCode:
        """Ask WeChat for a pre-authorization code (``api_create_preauthcode``, with the
        component token): single use, valid ``expires_in`` seconds. Most callers want
        :meth:`authorization_url`, which asks for one and builds the page's URL."""
        body = {"component_appid": self.component_appid}
        return parse_pre_auth_code(self._call(self._context(), PRE_AUTH_CODE, body))

    def authorization_url(
        self,
        redirect_uri: str,
        *,
        auth_type: int = 3,
        biz_appid: str | None = None,
        mobile: bool = False,
    ) -> str:
        """A new pre-authorization code, in the URL of the page where an account's
        administrator authorizes this platform (see
        :func:`wxauth.openplatform.authorization_url` for the options). WeChat then
        sends the browser to ``redirect_uri`` with ``auth_code=...``: give that code to
        :meth:`query_auth`; an ``authorized`` push with the same code follows. Each call
        makes a new single-use code, so build the URL when the page is shown."""

        check_authorization_options(self.component_appid, redirect_uri, auth_type, biz_appid)
        return authorization_url(
            self.component_appid,
            self.create_pre_auth_code(),
            redirect_uri,
            auth_type=auth_type,
            biz_appid=biz_appid,
            mobile=mobile,
        )

    def query_auth(self, authorization_code: str | Secret) -> Authorization:
        """Exchange an authorization code (``api_query_auth``): the authorizer's refresh
        token is stored durably, its access token in the store. Returns the authorizer
        and the permission sets it granted.

        Raises :class:`~wxauth.openplatform.AuthorizationCodeError` for a code that is
        invalid or expired (61009/61010), and
        :class:`~wxauth.openplatform.AuthorizerNotAuthorizedError` when the account's
        cancellation (an ``unauthorized`` push) was handled while the code was being
        exchanged: nothing is stored then."""
        if isinstance(authorization_code, str):
            authorization_code = Secret(authorization_code)
        if not isinstance(authorization_code, Secret) or not authorization_code:
            raise ValueError("authorization_code must be a non-empty str")
        result, stored = self._exchange(authorization_code, event_time=None)
        if not stored:
            raise AuthorizerNotAuthorizedError(
                61003,
                f"authorizer appid={result.authorizer_appid} cancelled its authorization "
                f"of component appid={self.component_appid} while its code was being "
                "exchanged; nothing stored",
                url_path=QUERY_AUTH,
            )
        return result

    def _exchange(self, code: Secret, *, event_time: int | None) -> tuple[Authorization, bool]:
        """Exchange a code; store the tokens unless the authorizer's record holds a
        later event (a cancellation, a later authorization push). Returns the
        authorization and whether its tokens were stored."""
        since = self.clock()
        body = {"component_appid": self.component_appid, "authorization_code": code}
        answer = self._call(self._context(), QUERY_AUTH, body, (code,))
        info = answer.get("authorization_info")
        if not isinstance(info, dict):
            raise TokenFetchError(f"{QUERY_AUTH} answered without authorization_info")
        refresh = take_secret(info, "authorizer_refresh_token")
        access = take_secret(info, "authorizer_access_token")
        appid = info.get("authorizer_appid")
        try:
            appid = check_appid("authorizer_appid", appid)
        except ValueError:
            raise TokenFetchError(f"{QUERY_AUTH} answered no valid authorizer_appid") from None
        result = Authorization(appid, _permissions(info.get("func_info")))
        if refresh is not None:
            stored = self.refresh_tokens.authorize(
                appid, refresh, event_time=event_time, since=since
            )
        else:
            logger.warning(
                "%s answered no authorizer_refresh_token for authorizer appid=%s (it granted "
                "no API permission?): its access token cannot be refreshed",
                QUERY_AUTH,
                appid,
            )
            stored = not self.refresh_tokens.superseded(appid, event_time=event_time, since=since)
        if not stored:
            logger.info(
                "authorizer appid=%s of component appid=%s: a later event (a cancellation "
                "or another authorization) was stored while its code was exchanged; kept it",
                appid,
                self.component_appid,
            )
            return result, False
        self._keep_authorizer_token(appid, access, info.get("expires_in"))
        logger.info(
            "authorizer appid=%s authorized component appid=%s; stored its refresh token",
            appid,
            self.component_appid,
        )
        return result, True

    def _keep_authorizer_token(self, appid: str, access: Secret | None, expires: object) -> None:
        """Store the access token a code exchange brought (a re-authorization retires
        the previous one), or drop the cached one if it brought none usable."""
        manager = self.authorizer(appid)
        store, key = manager.store, manager.key
        manager._local.clear()
        expires_in = None
        if access is not None:
            # The answer's checks on a stand-in value: no local holds the token in clear.
            answer = {"access_token": "-", "expires_in": expires}
            try:
                _, expires_in = parse_token_answer(answer, QUERY_AUTH)
            except TokenFetchError as exc:
                logger.warning("authorizer appid=%s: %s", appid, exc)
        if access is None or expires_in is None:
            cached = store.get(key)
            if cached is not None:
                store.delete_if(key, cached.value)
            return
        lock = store.lock(key, lease=manager.lease)
        if not lock.acquire(timeout=TOKEN_WRITE_WAIT):
            logger.info(
                "authorizer appid=%s: its token is being fetched; not storing the one "
                "api_query_auth answered",
                appid,
            )
            return
        try:
            store.set(
                key,
                Token.issued(access.get_secret_value(), expires_in, self.clock(), fence=lock.fence),
            )
        finally:
            release_quietly(lock)

    def _forget(self, authorizer_appid: str, event_time: int) -> None:
        """An authorizer cancelled: mark its refresh token cancelled and drop its
        cached token, unless the stored record came from a later push."""
        if not self.refresh_tokens.cancel(authorizer_appid, event_time=event_time):
            logger.info(
                "ignored an unauthorized push for authorizer appid=%s older than the "
                "authorization stored (CreateTime %d)",
                authorizer_appid,
                event_time,
            )
            return
        key = self.keys.authorizer_token(authorizer_appid)
        cached = self.store.get(key)
        if cached is not None:
            self.store.delete_if(key, cached.value)
        with self._managers_lock:
            manager = self._managers.pop(authorizer_appid, None)
        if manager is not None:
            manager._local.clear()
        logger.info(
            "authorizer appid=%s cancelled its authorization of component appid=%s; "
            "forgot its tokens",
            authorizer_appid,
            self.component_appid,
        )


def _permissions(func_info: object) -> tuple[int, ...]:
    """The permission set ids of an answer's ``func_info``."""
    ids = []
    if isinstance(func_info, list):
        for item in func_info:
            category = item.get("funcscope_category") if isinstance(item, Mapping) else None
            value = category.get("id") if isinstance(category, Mapping) else None
            if type(value) is int:
                ids.append(value)
    return tuple(ids)
